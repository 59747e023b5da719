"""The use cases of one service process, wired once and shared by its doors (gRPC and CDS Hooks):
one database pool, one key store, one signer, one engine cache — so both doors evaluate with the
same rules, knowledge and vocabulary, and neither copies the other's path."""

from __future__ import annotations

from dataclasses import dataclass

from engine.app.calls import Calls
from engine.app.clients import ClientRegistry, JwksFetcher
from engine.app.emergency import EmergencyAccess
from engine.app.engine_cache import EngineCache
from engine.app.evaluation import Evaluations
from engine.app.feedback import FeedbackService
from engine.app.records import Records
from engine.app.settings import ServiceSettings
from store.crypto import key_provider_from_env
from store.keys import KeyStore
from store.session import Database
from store.signing import Signer, signer_from_env

__all__ = ["Services"]


@dataclass
class Services:
    db: Database
    keys: KeyStore
    signer: Signer
    engines: EngineCache
    calls: Calls
    evaluations: Evaluations
    feedback: FeedbackService
    clients: ClientRegistry  # the registered clients (EHRs, backends), cached and refreshed
    records: Records
    emergency: EmergencyAccess

    @classmethod
    def wire(
        cls,
        db: Database,
        keys: KeyStore,
        signer: Signer,
        engines: EngineCache,
        *,
        max_active_items: int = 100,
        max_alerts: int = 200,
        allow_http_jwks: bool = False,
        emergency_grant_minutes: int = 60,
    ) -> Services:
        calls = Calls(db)
        return cls(
            db=db,
            keys=keys,
            signer=signer,
            engines=engines,
            calls=calls,
            evaluations=Evaluations(
                db, keys, signer, engines, calls, max_active_items=max_active_items, max_alerts=max_alerts
            ),
            feedback=FeedbackService(db, keys, calls),
            clients=ClientRegistry.from_database(db, fetch_jwks=JwksFetcher(allow_http=allow_http_jwks)),
            records=Records(db, keys, calls, max_active_items=max_active_items),
            emergency=EmergencyAccess(db, keys, calls, grant_minutes=emergency_grant_minutes),
        )

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Services:
        db = Database(
            pool_size=settings.db_pool_size,
            pool_timeout=settings.db_pool_timeout_s,
            statement_timeout_ms=settings.statement_timeout_ms,
        )
        return cls.wire(
            db,
            KeyStore(key_provider_from_env()),
            signer_from_env(),
            EngineCache(settings.engine_refresh_seconds),
            max_active_items=settings.max_active_items,
            max_alerts=settings.max_alerts,
            allow_http_jwks=settings.insecure_plaintext,
            emergency_grant_minutes=settings.emergency_grant_minutes,
        )
