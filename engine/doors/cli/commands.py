"""CLI subcommands that touch the database or the network (the edge of the engine).

Operator commands (tenants, users, families, consents, keys, demo data) run on the admin
connection (DATABASE_URL); PHI they write is encrypted here, with keys from the key provider.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

__all__ = ["register"]

from engine.doors.cli.common import CommandError, Sub, _admin_engine, _guarded, _wiring


def _migrate(args: argparse.Namespace) -> int:
    from store import migrate

    if args.check:
        try:
            migrate.check_drift()
        except migrate.DriftDetected as exc:
            print(f"praneya: migrations and store/models.py disagree: {exc}", file=sys.stderr)
            return 1
        print("no drift: migrations and models agree")
        return 0
    if args.downgrade:
        migrate.downgrade(args.downgrade)
    else:
        migrate.upgrade(args.revision)
    return 0


def _keys_init(args: argparse.Namespace) -> int:
    from store.crypto import generate_master_key_file

    path = Path(args.file)
    if path.exists():
        print(f"master key file {path} already exists; left as it is")
        return 0
    generate_master_key_file(path)
    print(f"created master key file {path} (mode 600); set PRANEYA_MASTER_KEY_FILE={path}")
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    from store.keys import create_data_key

    with _wiring() as w, w.admin.begin() as conn:
        if conn.exec_driver_sql("SELECT 1 FROM public.tenants WHERE id = %(t)s", {"t": args.tenant}).first() is None:
            raise CommandError(f"--tenant: no tenant {args.tenant!r}")
        version = create_data_key(conn, w.provider, args.tenant)
    print(
        f"tenant {args.tenant}: new data key version {version}; new writes use it, older versions still decrypt."
        f" Run `praneya keys reencrypt --tenant {args.tenant}` to move existing values."
    )
    return 0


def _keys_reencrypt(args: argparse.Namespace) -> int:
    from store.keys import ReencryptProgress, reencrypt_tenant

    def show(p: ReencryptProgress) -> None:
        _progress_bar("re-encrypting", p.done, p.total)

    with _wiring() as w:
        n = reencrypt_tenant(w.admin, w.provider, args.tenant, batch_size=args.batch_size, on_progress=show)
    print(f"\ntenant {args.tenant}: re-encrypted {n} rows to the newest key version")
    return 0


def _keys_rotate_master(args: argparse.Namespace) -> int:
    from store.crypto import LocalKeyFileProvider
    from store.keys import rotate_master_key

    new = LocalKeyFileProvider(Path(args.new_key_file))
    with _wiring() as w, w.admin.begin() as conn:
        n = rotate_master_key(conn, w.provider, new)
    print(f"re-wrapped {n} data keys under the new master key; now set PRANEYA_MASTER_KEY_FILE={args.new_key_file}")
    return 0


def _tenants_create(args: argparse.Namespace) -> int:
    from store.admin import create_tenant

    with _wiring() as w, w.admin.begin() as conn:
        created = create_tenant(conn, w.provider, args.id, args.name, args.subdomain, args.plan)
    print(f"tenant {args.id} {'created with data key v1' if created else 'already exists'}")
    return 0


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _users_create(args: argparse.Namespace) -> int:
    from store.admin import UserInput, create_user
    from store.patients import ProfileInput, create_profile

    with _wiring() as w, w.admin.begin() as conn:
        created = create_user(
            conn,
            w.keys,
            args.tenant,
            args.id,
            UserInput(
                first_name=args.first_name,
                last_name=args.last_name,
                email=args.email,
                phone=args.phone,
                date_of_birth=args.dob,
                healthcare_role=args.role,
                subscription_tier=args.tier,
                mfa_enabled=args.mfa,
            ),
        )
        if created and args.with_profile:
            create_profile(
                conn,
                w.keys,
                args.tenant,
                args.id,
                ProfileInput(sex=args.sex, pregnancy_status=args.pregnancy, subscription_tier=args.tier),
            )
    print(f"user {args.id} {'created' if created else 'already exists'}")
    return 0


def _family_create(args: argparse.Namespace) -> int:
    from store.admin import add_family_member, create_family

    with _wiring() as w, w.admin.begin() as conn:
        created = create_family(conn, w.keys, args.tenant, args.id, args.primary, args.name, args.max_members)
        if created:
            add_family_member(conn, args.tenant, args.id, args.primary, "SELF", "ADMIN", True)
    print(f"family {args.id} {'created' if created else 'already exists'}")
    return 0


def _family_add(args: argparse.Namespace) -> int:
    from store.admin import add_family_member

    with _wiring() as w, w.admin.begin() as conn:
        mid = add_family_member(
            conn,
            args.tenant,
            args.family,
            args.user,
            args.relationship,
            args.permission,
            args.can_view,
            args.minor_until,
            args.guardian_consent,
        )
    print(f"member {mid} in family {args.family}")
    return 0


def _consent_grant(args: argparse.Namespace) -> int:
    from store.admin import grant_consent

    with _wiring() as w, w.admin.begin() as conn:
        cid = grant_consent(
            conn,
            w.keys,
            args.tenant,
            args.subject,
            args.grantee,
            [c.strip().upper() for c in args.categories.split(",") if c.strip()],
            timedelta(days=args.days) if args.days else None,
            args.purpose,
        )
    print(f"consent {cid} granted")
    return 0


def _consent_revoke(args: argparse.Namespace) -> int:
    from store.admin import revoke_consent

    with _wiring() as w, w.admin.begin() as conn:
        if not revoke_consent(conn, args.id):
            raise CommandError(f"--id: no active consent {args.id!r}")
    print(f"consent {args.id} revoked")
    return 0


def _demo_seed(args: argparse.Namespace) -> int:
    from store.demo import seed_demo

    with _wiring() as w:
        app = w.app()
        try:
            created = seed_demo(w.admin, app, w.provider, w.keys)
        finally:
            app.dispose()
    print("demo data ready: " + ", ".join(f"{k} created {v}" for k, v in created.items()))
    return 0


def _checked_rules(paths: list[str], *, run_cases: bool) -> list[Any]:
    """The rules under `paths` after lint (and, for a sync, every rule's cases): any error stops the
    command before it touches the database, naming the file, rule and case."""
    from engine import ruletool
    from engine.rules import load_rule_files

    knowledge = ruletool._load_knowledge(paths, None, sys.stderr)
    if knowledge is None:
        raise CommandError("rules: the knowledge files did not load; nothing was written")
    report = ruletool.lint(paths, knowledge, ruletool._schema(paths))
    if report.errors:
        for line in report.errors:
            print(line, file=sys.stderr)
        raise CommandError(f"rules: {len(report.errors)} lint error(s); nothing was written")
    loaded = load_rule_files(paths)
    if run_cases:
        _, failures = ruletool.run_rule_cases(loaded, knowledge)
        if failures:
            for line in failures:
                print(line, file=sys.stderr)
            raise CommandError(f"rules sync: {len(failures)} case(s) failed; nothing was written")
    rules = [r.rule for r in loaded if r.rule is not None]
    if not rules:
        raise CommandError("rules: no rules found; nothing was written")
    return rules


def _rule_scope(conn: Any, args: argparse.Namespace) -> str | None:
    tenant: str | None = getattr(args, "tenant", None)
    if tenant and conn.exec_driver_sql("SELECT 1 FROM public.tenants WHERE id = %(t)s", {"t": tenant}).first() is None:
        raise CommandError(f"--tenant: no tenant {tenant!r}")
    return tenant


def _rules_sync(args: argparse.Namespace) -> int:
    from store.knowledge_repo import sync_rules

    rules = _checked_rules(args.paths or ["rules"], run_cases=True)
    with _admin_engine() as engine, engine.begin() as conn:
        tenant = _rule_scope(conn, args)
        try:
            result = sync_rules(conn, rules, tenant_id=tenant, actor=args.actor, retire_missing=args.retire_missing)
        except ValueError as exc:
            raise CommandError(f"rules sync: {exc}; nothing was written") from None
    scope = f"tenant {tenant}" if tenant else "global"
    print(
        f"rules sync ({scope}): {len(result.created)} created, {len(result.updated)} updated,"
        f" {len(result.unchanged)} unchanged, {len(result.retired)} retired"
    )
    for rule_id in result.retired:
        print(f"retired {rule_id}: its file is gone")
    for rule_id in result.missing:
        print(f"still live {rule_id}: its file is gone (sync with --retire-missing to retire it)")
    return 0


def _rules_diff(args: argparse.Namespace) -> int:
    from store.knowledge_repo import plan_rule_sync

    rules = _checked_rules(args.paths or ["rules"], run_cases=False)
    with _admin_engine() as engine, engine.connect() as conn:
        tenant = _rule_scope(conn, args)
        plan = plan_rule_sync(conn, rules, tenant_id=tenant)
    for label, ids in (
        ("created", plan.created),
        ("updated", plan.updated),
        ("retired", plan.retired),
        ("unchanged", plan.unchanged),
    ):
        suffix = " (with --retire-missing; otherwise stays live)" if label == "retired" else ""
        for rule_id in ids:
            print(f"{label:9} {rule_id}{suffix}")
    for line in plan.refused:
        print(f"refused   {line}")
    scope = f"tenant {tenant}" if tenant else "global"
    print(
        f"rules diff ({scope}): {len(plan.created)} created, {len(plan.updated)} updated,"
        f" {len(plan.retired)} retired, {len(plan.unchanged)} unchanged, {len(plan.refused)} refused; nothing written"
    )
    return 1 if plan.refused else 0


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def _rules_list(args: argparse.Namespace) -> int:
    from store.knowledge_repo import list_rules

    with _admin_engine() as engine, engine.connect() as conn:
        tenant = _rule_scope(conn, args)
        stored = list_rules(conn, tenant, include_global=True)
    if not args.all:
        stored = [r for r in stored if r.status != "retired"]
    print(f"{'RULE':44} {'SCOPE':16} {'VERSION':>7} {'STATUS':8} {'SYNCED BY':16} SYNCED AT")
    for r in stored:
        print(f"{r.rule_id:44} {r.scope:16} {r.version:7} {r.status:8} {r.synced_by or '-':16} {_when(r.synced_at)}")
    print(f"{len(stored)} rule(s)")
    return 0


def _rules_history(args: argparse.Namespace) -> int:
    from store.knowledge_repo import rule_history

    with _admin_engine() as engine, engine.connect() as conn:
        tenant = _rule_scope(conn, args)
        versions = rule_history(conn, tenant, args.rule)
    if args.rule and not versions:
        raise CommandError(f"rules history: no rule {args.rule!r} in scope {tenant or 'global'}")
    print(f"{'RULE':44} {'VERSION':>7} {'STATUS':8} {'SYNCED BY':16} SYNCED AT")
    for r in versions:
        print(f"{r.rule_id:44} {r.version:7} {r.status:8} {r.synced_by or '-':16} {_when(r.synced_at)}")
    return 0


def _progress_bar(label: str, done: int, total: int, width: int = 30) -> None:
    filled = width if total == 0 else int(width * done / total)
    print(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="", file=sys.stderr, flush=True)


def _progress(done: int, total: int) -> None:
    _progress_bar("importing", done, total)


OWN_PROFILE = Path("rules/knowledge/profiles/praneya.yaml")  # our CSV layout, under the project root


def _knowledge_import(args: argparse.Namespace) -> int:
    import hashlib
    import time

    from engine import knowledge_import as ki
    from engine.knowledge import CsvImportError
    from store.config import PROJECT_ROOT
    from store.knowledge_repo import import_interaction_pairs, load_knowledge

    started = time.monotonic()
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"{path}: cannot read ({exc.strerror})") from None
    # No --profile and no --column: our own layout, through the same code as any other source's.
    profile_path = Path(args.profile) if args.profile else None if args.column else PROJECT_ROOT / OWN_PROFILE
    try:
        document: dict[str, Any] = {}
        if profile_path is not None:
            try:
                profile_text = profile_path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"--profile {profile_path}: cannot read ({exc})") from None
            document = ki.load_profile_document(profile_text, where=str(profile_path))
        document = ki.with_flags(
            document,
            columns=args.column,
            severities=args.severity,
            delimiter=args.delimiter,
            encoding=args.encoding,
            evidence=args.evidence,
            code_system=args.code_system,
        )
        profile = ki.profile_from_document(document, where=str(profile_path or "--column flags"))
    except ki.ProfileError as exc:
        raise CommandError(f"profile: {exc}") from None
    source = args.source or profile.source
    if not source:
        raise CommandError("--source: name the source (e.g. fdb-2026-10), or give the profile a `source:`")
    with _admin_engine() as engine, engine.begin() as conn:
        vocabulary = load_knowledge(conn, None, shared_pairs=()).vocabulary
        if not vocabulary.ingredients:
            raise CommandError("the drug vocabulary is empty: run `praneya knowledge vocabulary` first")
        try:
            plan = ki.plan_import(data, profile, vocabulary, source=source)
        except CsvImportError as exc:
            raise CommandError(f"{path}: {exc}\nnothing was imported") from None
        for line in (*ki.describe_folds(plan), *ki.describe_expansions(plan), *plan.notes):
            print(line)
        if plan.unresolved:
            report = Path(args.unresolved_report or f"{path}.unresolved.tsv")
            try:
                report.write_text(ki.unresolved_report_tsv(plan), encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"--unresolved-report {report}: cannot write ({exc.strerror})") from None
            if not args.allow_unresolved:
                raise CommandError(
                    f"{path}: {len(plan.unresolved)} name(s) did not resolve to known ingredients (listed in"
                    f" {report}); nothing was imported. Correct them, or rerun with --allow-unresolved to store"
                    " their pairs flagged for review (never matched)"
                )
            print(f"{len(plan.unresolved)} unresolved name(s) listed in {report}")
        result = import_interaction_pairs(
            conn,
            plan.pairs,
            source=source,
            file_sha256=hashlib.sha256(data).hexdigest(),
            on_progress=_progress,
        )
    print(
        f"\n{path}: {plan.rows_read} rows read; {result.rows} pairs stored ({result.inserted} new,"
        f" {result.updated} changed, {result.unchanged} unchanged; {result.flagged} flagged unresolved, never"
        f" matched); {plan.folded_rows} folded duplicates; {len(plan.unresolved)} unresolved names;"
        f" {len(plan.expanded)} expanded combinations; {time.monotonic() - started:.1f} s"
    )
    return 0


def _knowledge_override(args: argparse.Namespace) -> int:
    from store.knowledge_repo import clear_override, set_override

    with _admin_engine() as engine, engine.begin() as conn:
        if args.clear:
            done = clear_override(conn, tenant_id=args.tenant, pair_id=args.pair)
            print(f"tenant {args.tenant}: override of {args.pair} {'removed' if done else 'was not set'}")
            return 0
        if not args.disable and not args.severity:
            raise CommandError("give --severity LEVEL or --disable (or --clear)")
        if not args.reason:
            raise CommandError("--reason: say why this tenant departs from the knowledge base")
        try:
            set_override(
                conn,
                tenant_id=args.tenant,
                pair_id=args.pair,
                severity=args.severity,
                disabled=args.disable,
                reason=args.reason,
                actor=args.actor,
            )
        except LookupError as exc:
            raise CommandError(str(exc)) from None
    what = "disabled" if args.disable else f"re-graded to {args.severity}"
    print(f"tenant {args.tenant}: pair {args.pair} {what}")
    return 0


def _knowledge_vocabulary(args: argparse.Namespace) -> int:
    from engine.knowledge import KnowledgeFileError, load_knowledge_files
    from store.knowledge_repo import sync_shipped_concepts, sync_vocabulary
    from store.rxnorm_import import read_shipped_table

    try:
        knowledge = load_knowledge_files(Path(args.dir))
        shipped = read_shipped_table(Path(args.dir))
    except KnowledgeFileError as exc:
        raise CommandError(str(exc)) from None
    with _admin_engine() as engine, engine.begin() as conn:
        rows = sync_vocabulary(conn, knowledge.vocabulary)
        concepts = sync_shipped_concepts(conn, shipped[0], shipped[1]) if shipped is not None else None
    print(f"vocabulary from {args.dir}: {rows} rows")
    if concepts is not None:
        print(f"concept table: {concepts.summary()}")
    return 0


def _knowledge_rxnorm_import(args: argparse.Namespace) -> int:
    import time

    from store.rxnorm_import import RetireRefused, RrfError, import_rxnorm_release

    started = time.monotonic()
    shown = [""]

    def show(what: str, done: int, total: int) -> None:
        if what != shown[0]:
            if shown[0]:
                print(file=sys.stderr)
            shown[0] = what
        if what == "applying":
            _progress_bar("applying", done, total)
        else:
            _progress_bar(f"{what} MB", done >> 20, total >> 20)

    try:
        with _admin_engine() as engine, engine.begin() as conn:
            result = import_rxnorm_release(
                conn, Path(args.dir), max_retire_percent=args.allow_retire, actor=args.actor, on_progress=show
            )
    except (RrfError, RetireRefused) as exc:
        raise CommandError(f"{exc}; nothing was imported" if isinstance(exc, RrfError) else str(exc)) from None
    finally:
        if shown[0]:
            print(file=sys.stderr)
    print(result.summary(time.monotonic() - started))
    return 0


def _check_sources(args: argparse.Namespace) -> tuple[Any, Any]:
    """Knowledge and rules from files (`--knowledge DIR`, rules from `--rules DIR`, default rules/),
    or from the database as synced (the default)."""
    if args.knowledge or args.rules:
        from engine.knowledge import KnowledgeFileError, load_knowledge_files
        from engine.rules import RuleSet, load_rule_files

        rules_dir = Path(args.rules or "rules")
        try:
            knowledge = load_knowledge_files(Path(args.knowledge or rules_dir / "knowledge"))
        except KnowledgeFileError as exc:
            raise CommandError(str(exc)) from None
        loaded = load_rule_files([rules_dir])
        broken = [r for r in loaded if r.rule is None or r.problems]
        if broken:
            first = broken[0]
            problem = first.problems[0].message if first.problems else "not a rule"
            raise CommandError(f"{first.path}: {problem} (run `praneya rules lint {rules_dir}`)")
        rules = [r.rule for r in loaded if r.rule is not None]
        return knowledge, RuleSet.build(rules, version=f"files:{len(rules)}")
    from store.knowledge_repo import load_knowledge, load_rules

    with _admin_engine() as engine, engine.connect() as conn:
        knowledge = load_knowledge(conn, args.tenant)
        ruleset = load_rules(conn, args.tenant)
    if len(ruleset) == 0:
        print(
            "praneya: warning: the database holds no rules; run `praneya rules sync --global`",
            file=sys.stderr,
        )
    return knowledge, ruleset


def _check(args: argparse.Namespace) -> int:
    import json

    from engine.adhoc import CaseError, case_from_json, flags_case, medication_classes, parse_lab_text, result_json
    from engine.evaluate import evaluate

    if args.fhir and (args.med or args.allergy or args.condition or args.lab or args.cases):
        raise CommandError(
            "--fhir gives the whole patient: --med, --allergy, --condition, --lab and --cases do not mix with it"
        )
    child_pugh_given = args.child_pugh is not None or args.child_pugh_score is not None or args.child_pugh_date
    if child_pugh_given and (args.fhir or args.cases):
        raise CommandError("--child-pugh, --child-pugh-score and --child-pugh-date do not mix with --fhir or --cases")
    if args.child_pugh_score is not None and not 5 <= args.child_pugh_score <= 15:
        raise CommandError(f"--child-pugh-score {args.child_pugh_score}: a Child-Pugh score is 5 to 15 points")
    if (args.patient or args.draft_orders) and not args.fhir:
        raise CommandError("--patient and --draft-orders go with --fhir")
    knowledge, ruleset = _check_sources(args)
    if args.cases:
        return _check_cases(args, knowledge, ruleset)
    try:
        labs = [parse_lab_text(text) for text in args.lab]
        case = flags_case(
            meds=args.med,
            proposed=args.propose,
            allergies=args.allergy,
            conditions=args.condition,
            labs=labs,
            foods=args.food,
            age=args.age,
            sex=args.sex,
            pregnant=args.pregnant,
            tier=args.tier,
            child_pugh=args.child_pugh,
            child_pugh_score=args.child_pugh_score,
            child_pugh_date=args.child_pugh_date,
            demographics=_demographic_flags(args),
        )
        _, snapshot, request = case_from_json(case)
    except CaseError as exc:
        raise CommandError(str(exc)) from None
    if args.fhir:
        snapshot, request = _fhir_case(args, request)
    if args.tenant:
        snapshot = replace(snapshot, tenant_id=args.tenant)
    result = evaluate(snapshot, request, ruleset, knowledge)
    if args.json:
        out = result_json(result)
        out["medications"] = medication_classes(
            knowledge.vocabulary, (*snapshot.medications, *request.proposed_medications)
        )
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    print(f"{'SEVERITY':9} {'KIND':22} {'RULE':34} SUMMARY")
    for a in result.alerts:
        print(f"{a.severity.name:9} {a.kind.value:22} {a.rule_id[:34]:34} {a.summary}")
    for u in result.unresolved:
        hint = f" (did you mean {', '.join(u.suggestions)}?)" if u.suggestions else ""
        notes = f" [{'; '.join(u.notes)}]" if u.notes else ""
        print(f"UNRESOLVED {u.kind} {u.text!r}: {u.reason}{hint}{notes}")
    for e in result.rule_errors:
        print(f"INCOMPLETE {e.rule_id}: {e.reason}")
    print(f"{len(result.alerts)} alert(s); complete={str(result.complete).lower()}")
    return 0


def _demographic_flags(args: argparse.Namespace) -> dict[str, Any]:
    """--birth-date, --weight, --height, --gestational-weeks, --lactating as a case's fields."""
    from engine.adhoc import quantity_flag

    out: dict[str, Any] = {"birth_date": args.birth_date, "lactating": args.lactating}
    if args.weight:
        out["weight"] = quantity_flag(args.weight, "--weight", "kg")
    if args.height:
        out["height"] = quantity_flag(args.height, "--height", "cm")
    if args.gestational_weeks is not None:
        if args.pregnant is not True:
            raise CommandError("--gestational-weeks goes with --pregnant")
        weeks, _, days = args.gestational_weeks.partition("+")
        try:
            pregnancy: dict[str, Any] = {"status": "pregnant", "gestational_weeks": int(weeks)}
            if days:
                pregnancy["gestational_days"] = int(days)
        except ValueError:
            raise CommandError("--gestational-weeks: whole weeks, or weeks+days (22 or 22+3)") from None
        out["pregnancy"] = pregnancy
    return out


def _fhir_case(args: argparse.Namespace, flags_request: Any) -> tuple[Any, Any]:
    """The patient of `--fhir` files (and `--draft-orders`) as the engine's snapshot and request;
    `--propose` and `--food` are added to what the files propose."""
    import json
    from datetime import date

    from engine.fhir import FhirError, iter_ndjson, parse_draft_orders, parse_patient_data
    from engine.model import EvaluationRequest

    items: list[tuple[str, Any]] = []
    single: Any = None
    for name in args.fhir:
        path = Path(name)
        try:
            if path.suffix == ".ndjson":
                with path.open(encoding="utf-8") as f:
                    items += list(iter_ndjson(f, source=path.name))
                continue
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CommandError(f"{path}: cannot read ({exc.strerror})") from None
        except (ValueError, UnicodeDecodeError):
            raise CommandError(f"{path}: is not JSON") from None
        except FhirError as exc:
            raise CommandError(str(exc)) from None
        if len(args.fhir) == 1:
            single = doc
        elif isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
            items += [(f"{path.name} entry[{i}]", e.get("resource")) for i, e in enumerate(doc.get("entry") or [])]
        else:
            items.append((path.name, doc))
    orders: Any = None
    if args.draft_orders:
        try:
            orders = json.loads(Path(args.draft_orders).read_text(encoding="utf-8"))
        except OSError as exc:
            raise CommandError(f"{args.draft_orders}: cannot read ({exc.strerror})") from None
        except (ValueError, UnicodeDecodeError):
            raise CommandError(f"{args.draft_orders}: is not JSON") from None
    try:
        data = parse_patient_data(single if single is not None else items, patient=args.patient)
        drafts = parse_draft_orders(orders) if orders is not None else ()
    except FhirError as exc:
        raise CommandError(str(exc)) from None
    reference = data.patient_ref or "supplied"
    snapshot = data.snapshot(reference, args.tenant or "cli", on=date.today())
    request = EvaluationRequest(
        proposed_medications=(*drafts, *flags_request.proposed_medications),
        proposed_foods=(*data.foods, *flags_request.proposed_foods),
    )
    return snapshot, request


def _check_cases(args: argparse.Namespace, knowledge: Any, ruleset: Any) -> int:
    """`--cases FILE` (or `-` for stdin): one JSON patient a line in, one JSON result a line out.
    A line that cannot be read gets an error line naming its field; the rest still run."""
    import json

    from engine.adhoc import CaseError, case_from_json, result_json
    from engine.evaluate import evaluate

    stream = sys.stdin if args.cases == "-" else open(args.cases, encoding="utf-8")
    failed = 0
    with stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                case_id, snapshot, request = case_from_json(json.loads(line), line=number)
            except json.JSONDecodeError as exc:
                failed += 1
                print(json.dumps({"line": number, "error": f"not JSON: {exc.msg} at column {exc.colno}"}))
                continue
            except CaseError as exc:
                failed += 1
                print(json.dumps({"line": number, "error": str(exc)}, ensure_ascii=False))
                continue
            result = evaluate(snapshot, request, ruleset, knowledge)
            print(json.dumps(result_json(result, case_id=case_id), ensure_ascii=False, separators=(",", ":")))
    if failed:
        print(f"praneya: {failed} case line(s) could not be read", file=sys.stderr)
    return 1 if failed else 0


def _serve(args: argparse.Namespace) -> int:
    import os

    from engine.app.settings import ServiceSettings, SettingsError
    from engine.doors.serve import serve

    env = dict(os.environ)
    for flag, var in (
        ("host", "PRANEYA_HOST"),
        ("port", "PORT"),
        ("workers", "PRANEYA_WORKERS"),
        ("tls_cert", "PRANEYA_TLS_CERT_FILE"),
        ("tls_key", "PRANEYA_TLS_KEY_FILE"),
        ("tls_client_ca", "PRANEYA_TLS_CLIENT_CA_FILE"),
    ):
        value = getattr(args, flag)
        if value is not None:
            env[var] = str(value)
    if args.insecure_plaintext:
        env["PRANEYA_INSECURE_PLAINTEXT"] = "1"
    try:
        settings = ServiceSettings.from_env(env)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    os.environ.update({k: v for k, v in env.items() if k.startswith("PRANEYA_") or k == "PORT"})
    return serve(settings)


def _dev_keys(args: argparse.Namespace) -> int:
    from engine.ops.dev import dev_environment, ensure_dev_keys

    paths = ensure_dev_keys()
    for key, value in dev_environment(paths).items():
        print(f"export {key}={value}")
    return 0


def _dev_token(args: argparse.Namespace) -> int:
    from engine.ops.dev import client_token_for, token_for

    if (args.user is None) == (args.client is None):
        raise CommandError("give --user (a user's token) or --client (a registered client's token)")
    try:
        if args.client is not None:
            if not args.audience:
                raise CommandError("--client needs --audience URL (the URL the client calls)")
            print(client_token_for(args.client, args.audience, scopes=args.scope, acting_for=args.acting_for,
                                   ttl_seconds=min(args.ttl, 300)))
        else:
            print(token_for(args.user, tenant_id=args.tenant, role=args.role, mfa=not args.no_mfa,
                            ttl_seconds=args.ttl))
    except LookupError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _dev_up(args: argparse.Namespace) -> int:
    import os

    from engine.app.settings import ServiceSettings, SettingsError
    from engine.doors.serve import serve
    from engine.ops.content import install_shipped_content
    from engine.ops.dev import database_summary, dev_environment, ensure_dev_client, ensure_dev_keys
    from store import migrate

    os.environ.update(dev_environment(ensure_dev_keys()))
    # Say which database before touching it: `make run` may have found one or started its own.
    database = database_summary()
    print(f"praneya dev up: {database}", flush=True)
    migrate.upgrade()
    failed = install_shipped_content()
    if failed is not None:
        raise CommandError(f"`praneya {failed}` failed")
    # The development EHR: a registered CDS client of the demo clinic (every scope, ES384).
    with _admin_engine() as engine, engine.begin() as conn:
        client = ensure_dev_client(conn, "demo-clinic")
    try:
        settings = ServiceSettings.from_env()
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    address = f"{settings.host}:{settings.port}"
    at = "" if address == "127.0.0.1:50051" else f" --address {address}"
    cds = (
        f"CDS Hooks on {settings.http_url}/cds-services (client {client.id}):\n"
        f"    curl --cacert .local/dev/ca.pem {settings.http_url}/cds-services\n"
        f"    .venv/bin/praneya dev token --client {client.id} --audience"
        f" {settings.http_url}/cds-services/praneya-medication-safety-order-select\n"
        if settings.http_port is not None
        else "CDS Hooks: not served (PRANEYA_HTTP_PORT=off)\n"
    )
    print(
        f"""
Praneya Clinical Safety Engine: serving on {address} (TLS, dev CA .local/dev/ca.pem).
Using {database}.
Try it in another terminal:

    .venv/bin/praneya dev call --user demo-advisor-01 --patient demo-patient-01{at}
    .venv/bin/praneya dev call --user demo-advisor-01 --patient demo-patient-02 --propose phenelzine{at}
    .venv/bin/praneya dev token --user demo-advisor-01     # a bearer token for grpcurl and friends

{cds}
Ctrl-C drains in-flight calls and stops.
""",
        flush=True,
    )
    return serve(settings)


def _dev_call(args: argparse.Namespace) -> int:
    from engine.ops.dev import call_evaluate, token_for

    try:
        token = token_for(args.user)
    except LookupError as exc:
        raise CommandError(str(exc)) from None
    return call_evaluate(args.address, token, args.patient, args.propose, args.food, args.json)


def _deploy(args: argparse.Namespace) -> int:
    from engine.ops.deploy import DeployError, deploy

    try:
        deploy(demo=args.demo, log_path=Path(args.log) if args.log else None)
    except DeployError as exc:
        print(f"praneya: deployment stopped: {exc}", file=sys.stderr)
        return 1
    return 0


def register(sub: Sub, rules: Sub) -> None:
    p = sub.add_parser("migrate", help="apply the database migrations to DATABASE_URL")
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    p.add_argument("--downgrade", metavar="REV", help="downgrade to REV instead (e.g. base)")
    p.add_argument("--check", action="store_true", help="fail when models and migrations disagree")
    p.set_defaults(handler=_migrate)

    keys = sub.add_parser("keys", help="master key and tenant data keys").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    p = keys.add_parser("init", help="create a local master key file if there is none")
    p.add_argument(
        "--file", default=".local/keys/master.key", help="where to write the key (default .local/keys/master.key)"
    )
    p.set_defaults(handler=_guarded(_keys_init))
    p = keys.add_parser("rotate", help="new data key version for a tenant (no downtime)")
    p.add_argument("--tenant", required=True, help="the tenant whose data keys get a new version")
    p.set_defaults(handler=_guarded(_keys_rotate))
    p = keys.add_parser("reencrypt", help="move every PHI value of a tenant to its newest key (online, resumable)")
    p.add_argument("--tenant", required=True, help="the tenant whose values are re-encrypted")
    p.add_argument("--batch-size", type=int, default=500, help="rows per transaction (default 500)")
    p.set_defaults(handler=_guarded(_keys_reencrypt))
    p = keys.add_parser("rotate-master", help="re-wrap every data key under a new master key file")
    p.add_argument(
        "--new-key-file", required=True, help="the new master key file (`praneya keys init --file` makes one)"
    )
    p.set_defaults(handler=_guarded(_keys_rotate_master))

    tenants = sub.add_parser("tenants", help="tenants").add_subparsers(dest="t_cmd", required=True, metavar="ACTION")
    p = tenants.add_parser("create", help="create a tenant and its first data key")
    p.add_argument("--id", required=True, help="tenant id (opaque: no names)")
    p.add_argument("--name", required=True, help="display name, e.g. Riverside Clinic")
    p.add_argument("--subdomain", help="the tenant's subdomain (default: none)")
    p.add_argument(
        "--plan",
        default="BASIC",
        choices=["BASIC", "PROFESSIONAL", "ENTERPRISE"],
        help="subscription plan (default BASIC)",
    )
    p.set_defaults(handler=_guarded(_tenants_create))

    users = sub.add_parser("users", help="users").add_subparsers(dest="u_cmd", required=True, metavar="ACTION")
    p = users.add_parser("create", help="create a user (PII encrypted)")
    p.add_argument("--tenant", required=True, help="the tenant the user belongs to")
    p.add_argument("--id", required=True, help="user id (opaque: no names)")
    p.add_argument("--first-name", help="first name (stored encrypted)")
    p.add_argument("--last-name", help="last name (stored encrypted)")
    p.add_argument("--email", help="email (stored encrypted, with a blind index for look-ups)")
    p.add_argument("--phone", help="phone number (stored encrypted)")
    p.add_argument("--dob", type=_date, help="date of birth, YYYY-MM-DD")
    p.add_argument(
        "--role",
        default="END_USER",
        choices=["END_USER", "CLINICAL_ADVISOR", "SUPER_ADMIN", "EMERGENCY_RESPONDER"],
        help="healthcare role (default END_USER, a patient)",
    )
    p.add_argument(
        "--tier",
        default="BASIC",
        choices=["BASIC", "ENHANCED", "PREMIUM"],
        help="subscription tier, which rules may test (default BASIC)",
    )
    p.add_argument("--mfa", action="store_true", help="the user has multi-factor authentication")
    p.add_argument("--with-profile", action="store_true", help="also create the user's health profile")
    p.add_argument(
        "--sex", choices=["female", "male", "other"], help="sex, for the health profile (with --with-profile)"
    )
    p.add_argument(
        "--pregnancy",
        choices=["pregnant", "not_pregnant"],
        help="pregnancy status, for the health profile (with --with-profile)",
    )
    p.set_defaults(handler=_guarded(_users_create))

    family = sub.add_parser("family", help="family accounts").add_subparsers(
        dest="f_cmd", required=True, metavar="ACTION"
    )
    p = family.add_parser("create", help="create a family account with its primary user as ADMIN member")
    p.add_argument("--tenant", required=True, help="the tenant of the family and its members")
    p.add_argument("--id", required=True, help="family account id (opaque: no names)")
    p.add_argument("--primary", required=True, help="primary user id")
    p.add_argument("--name", help="family name (stored encrypted)")
    p.add_argument("--max-members", type=int, default=6, help="most members the family may have (default 6)")
    p.set_defaults(handler=_guarded(_family_create))
    p = family.add_parser("add", help="add or update a member")
    p.add_argument("--tenant", required=True, help="the tenant of the family and the user")
    p.add_argument("--family", required=True, help="family account id")
    p.add_argument("--user", required=True, help="the member's user id")
    p.add_argument(
        "--relationship",
        required=True,
        choices=[
            "SELF",
            "SPOUSE",
            "PARTNER",
            "CHILD",
            "PARENT",
            "SIBLING",
            "GRANDPARENT",
            "GRANDCHILD",
            "GUARDIAN",
            "OTHER",
        ],
        help="how the member is related to the family's primary user",
    )
    p.add_argument(
        "--permission",
        default="MEMBER",
        choices=["VIEW_ONLY", "MEMBER", "GUARDIAN", "ADMIN"],
        help="the member's permission level (default MEMBER; GUARDIAN or ADMIN may see a consenting minor's data)",
    )
    p.add_argument("--can-view", action="store_true", help="this member may view health data others share")
    p.add_argument("--minor-until", type=_date, help="a minor's 18th birthday, YYYY-MM-DD")
    p.add_argument(
        "--guardian-consent",
        action="store_true",
        help="a guardian consented to sharing a minor's health data (needs --minor-until)",
    )
    p.set_defaults(handler=_guarded(_family_add))

    consent = sub.add_parser("consent", help="consents between family members").add_subparsers(
        dest="c_cmd", required=True, metavar="ACTION"
    )
    p = consent.add_parser("grant", help="the subject lets the grantee see categories of their health data")
    p.add_argument("--tenant", required=True, help="the tenant of both users")
    p.add_argument("--subject", required=True, help="user id whose health data is shared")
    p.add_argument("--grantee", required=True, help="user id who may see it")
    p.add_argument("--categories", required=True, help="comma-separated: PROFILE,MEDICATIONS,ALLERGIES,...")
    p.add_argument("--days", type=int, help="expires after this many days")
    p.add_argument("--purpose", help="why it is shared, recorded with the consent")
    p.set_defaults(handler=_guarded(_consent_grant))
    p = consent.add_parser("revoke", help="revoke a consent (takes effect at once)")
    p.add_argument("--tenant", required=True, help="the tenant of the consent")
    p.add_argument("--id", required=True, help="consent id (as printed by `consent grant`)")
    p.set_defaults(handler=_guarded(_consent_revoke))

    p = rules.add_parser("sync", help="upsert rule files into clinical.clinical_rules (all or nothing)")
    p.add_argument("paths", nargs="*", help="files or folders (default: rules/)")
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--tenant", help="the tenant whose own rules these are")
    scope.add_argument("--global", dest="global_", action="store_true", help="the rules every tenant gets")
    p.add_argument("--actor", default="praneya-cli", help="who synced, for the version history and audit")
    p.add_argument(
        "--retire-missing",
        action="store_true",
        help="retire the scope's live rules whose file is no longer among PATHS (without it they are listed)",
    )
    p.set_defaults(handler=_guarded(_rules_sync))

    p = rules.add_parser("diff", help="what a sync of PATHS would change (created/updated/retired), writing nothing")
    p.add_argument("paths", nargs="*", help="files or folders (default: rules/)")
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--tenant", help="compare with this tenant's own rules")
    scope.add_argument("--global", dest="global_", action="store_true", help="compare with the global rules")
    p.set_defaults(handler=_guarded(_rules_diff))

    p = rules.add_parser("list", help="the stored rules: id, scope, version, status, synced by and when")
    p.add_argument("--tenant", help="this tenant's own rules beside the global ones (default: global only)")
    p.add_argument("--all", action="store_true", help="include retired rules")
    p.set_defaults(handler=_guarded(_rules_list))

    p = rules.add_parser("history", help="every stored version of the rules (or of one), who synced it and when")
    p.add_argument("rule", nargs="?", help="one rule id (default: every rule of the scope)")
    p.add_argument("--tenant", help="the tenant's own rules (default: global)")
    p.set_defaults(handler=_guarded(_rules_history))

    knowledge = sub.add_parser("knowledge", help="drug vocabulary and interaction knowledge").add_subparsers(
        dest="k_cmd", required=True, metavar="ACTION"
    )
    p = knowledge.add_parser(
        "import",
        help="import an interactions CSV, ours or another knowledge base's export (idempotent, all or nothing)",
        description="Columns and grades come from a profile (rules/README.md); with neither --profile nor"
        " --column, our own layout (rules/knowledge/profiles/praneya.yaml). Flags replace the profile's entries.",
    )
    p.add_argument("file", help="the CSV file")
    p.add_argument("--source", help="name of the source, e.g. onc-2012 or fdb-2026-10 (default: the profile's)")
    p.add_argument("--profile", metavar="FILE", help="YAML import profile: columns, severity map, encoding, ...")
    p.add_argument("--column", action="append", default=[], metavar="FIELD=HEADER",
                   help="which column holds a field, e.g. drug_a=Drug1 (the fields: rules/README.md)")
    p.add_argument("--severity", action="append", default=[], metavar="GRADE=LEVEL",
                   help="the source's grade -> INFO|LOW|MODERATE|HIGH|CRITICAL, e.g. Major=HIGH")
    p.add_argument("--delimiter", help="one character, or tab, comma, semicolon, pipe (default ,)")
    p.add_argument("--encoding", help="the file's text encoding (default utf-8)")
    p.add_argument("--evidence", help="evidence level of rows without one (default UNKNOWN)")
    p.add_argument("--code-system", help="system of drug_a_code/drug_b_code: rxnorm or ndc")
    p.add_argument(
        "--unresolved-report", metavar="FILE", help="where to list unresolved names (default FILE.unresolved.tsv)"
    )
    p.add_argument("--allow-unresolved", action="store_true",
                   help="store pairs of unresolved names flagged for review (never matched) instead of refusing")
    p.set_defaults(handler=_guarded(_knowledge_import))
    p = knowledge.add_parser("override", help="a tenant re-grades or disables an interaction pair for itself")
    p.add_argument("--tenant", required=True, help="the tenant the override applies to")
    p.add_argument("--pair", required=True, help="the pair id (clinical.interaction_pairs.id)")
    p.add_argument(
        "--severity",
        choices=["INFO", "LOW", "MODERATE", "HIGH", "CRITICAL"],
        help="the severity this tenant gives the pair",
    )
    p.add_argument("--disable", action="store_true", help="this tenant gets no alert for the pair")
    p.add_argument("--clear", action="store_true", help="remove the tenant's override")
    p.add_argument(
        "--reason", help="why this tenant departs from the knowledge base (required with --severity or --disable)"
    )
    p.add_argument("--actor", default="praneya-cli", help="who made the change, for the audit (default praneya-cli)")
    p.set_defaults(handler=_guarded(_knowledge_override))
    p = knowledge.add_parser("vocabulary", help="load the drug vocabulary (vocabulary.yaml) into the database")
    p.add_argument("--dir", default="rules/knowledge", help="folder holding vocabulary.yaml (default rules/knowledge)")
    p.set_defaults(handler=_guarded(_knowledge_vocabulary))
    rxnorm = knowledge.add_parser("rxnorm", help="RxNorm releases into clinical.drug_concepts").add_subparsers(
        dest="rx_cmd", required=True, metavar="ACTION"
    )
    p = rxnorm.add_parser(
        "import",
        help="import an unpacked RxNorm release (RXNCONSO, RXNREL, RXNSAT .RRF); idempotent, all or nothing",
    )
    p.add_argument("dir", help="the release folder (the .RRF files in it or in its rrf/ folder)")
    p.add_argument(
        "--allow-retire",
        type=float,
        default=5.0,
        metavar="PERCENT",
        help="refuse a release that would retire more than this share of the active codes it covers (default 5)",
    )
    p.add_argument("--actor", default="praneya-cli", help="who imported, for the release row")
    p.set_defaults(handler=_guarded(_knowledge_rxnorm_import))

    p = sub.add_parser("check", help="evaluate ad-hoc facts against the database's rules and knowledge")
    p.add_argument(
        "--med", action="append", default=[], help="a current medication: a name, rxnorm:CODE, ndc:CODE or system|code"
    )
    p.add_argument("--propose", action="append", default=[], help="a proposed medication (name or code, repeatable)")
    p.add_argument("--allergy", action="append", default=[], help="an allergy (name or code, repeatable)")
    p.add_argument(
        "--condition", action="append", default=[], help="a condition: a name, icd10:CODE or snomed:CODE (repeatable)"
    )
    p.add_argument("--food", action="append", default=[], help="a proposed food or recipe ingredient")
    p.add_argument(
        "--lab",
        action="append",
        default=[],
        help="a latest reading: TYPE=VALUE[UNIT][@DATE] or loinc:CODE=VALUE UNIT[@DATE] "
        "(potassium=5.8mmol/L, 'loinc:2823-3=5.8 mmol/L@2026-11-30', egfr=25 in the catalog's unit; "
        "no @DATE: taken now)",
    )
    p.add_argument("--age", type=int, help="the patient's age in years")
    p.add_argument("--sex", choices=["female", "male", "other"], help="the patient's sex")
    p.add_argument(
        "--child-pugh", type=str.upper, choices=["A", "B", "C"], help="the patient's Child-Pugh class (hepatic bands)"
    )
    p.add_argument("--child-pugh-score", type=int, metavar="POINTS", help="the Child-Pugh score, 5-15 (class derived)")
    p.add_argument(
        "--child-pugh-date", metavar="YYYY-MM-DD", help="when the Child-Pugh assessment was made (default: unrecorded)"
    )
    p.add_argument(
        "--pregnant",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the patient is (or is not) pregnant (default: unknown)",
    )
    p.add_argument("--birth-date", metavar="YYYY-MM-DD", help="birth date; age is computed on today's date")
    p.add_argument("--weight", metavar="W[@DATE]", help="body weight with unit and date taken, e.g. 70kg@2026-01-10")
    p.add_argument("--height", metavar="H[@DATE]", help="body height with unit, e.g. 170cm")
    p.add_argument("--gestational-weeks", metavar="W[+D]", help="with --pregnant: gestational age today (22 or 22+3)")
    p.add_argument(
        "--lactating",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the patient is (or is not) breastfeeding (default: unknown)",
    )
    p.add_argument(
        "--tier",
        default="PREMIUM",
        choices=["BASIC", "ENHANCED", "PREMIUM"],
        help="subscription tier (default PREMIUM)",
    )
    p.add_argument("--tenant", help="evaluate with this tenant's own rules and overrides")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--knowledge", metavar="DIR", help="read vocabulary and interactions from DIR instead of the database"
    )
    p.add_argument("--rules", metavar="DIR", help="read rules from DIR instead of the database (default rules/)")
    p.add_argument(
        "--cases", metavar="FILE", help="JSON lines, one patient each (- for stdin); one JSON result line per case"
    )
    p.add_argument(
        "--fhir",
        metavar="FILE",
        action="append",
        default=[],
        help="the patient as FHIR R4: a Bundle or resource (.json), or NDJSON files (.ndjson), repeatable",
    )
    p.add_argument("--patient", metavar="ID", help="with --fhir: the patient of bulk NDJSON that holds several")
    p.add_argument(
        "--draft-orders",
        metavar="FILE",
        help="with --fhir: a Bundle of draft MedicationRequests, evaluated as proposed",
    )
    p.set_defaults(handler=_guarded(_check))

    p = sub.add_parser("serve", help="run the gRPC service (settings from the environment; flags override)")
    p.add_argument("--host", help="listen address (default PRANEYA_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default PORT or 50051; 0 picks a free one)")
    p.add_argument("--workers", type=int, help="processes sharing the port (default PRANEYA_WORKERS or 1)")
    p.add_argument("--tls-cert", help="server certificate, PEM (default PRANEYA_TLS_CERT_FILE)")
    p.add_argument("--tls-key", help="server private key, PEM (default PRANEYA_TLS_KEY_FILE)")
    p.add_argument("--tls-client-ca", help="require and verify client certificates against this CA")
    p.add_argument("--insecure-plaintext", action="store_true", help="no TLS: local development only")
    p.set_defaults(handler=_guarded(_serve))

    dev = sub.add_parser("dev", help="local development helpers").add_subparsers(
        dest="dev_cmd", required=True, metavar="ACTION"
    )
    p = dev.add_parser("keys", help="create development keys and certificates under .local/dev")
    p.set_defaults(handler=_guarded(_dev_keys))
    p = dev.add_parser("token", help="mint a bearer token with the local development key (a user's or a client's)")
    p.add_argument("--user", help="user id the token is for")
    p.add_argument("--client", help="a development client (e.g. dev-ehr) whose signed token to print")
    p.add_argument("--audience", help="with --client: the URL it calls (CDS Hooks: the service endpoint URL)")
    p.add_argument("--scope", action="append",
                   help="with --client: a scope the token asks for (repeatable; default all it is granted)")
    p.add_argument("--acting-for", help="with --client: the user it acts for, e.g. Practitioner/123 (fhirUser)")
    p.add_argument("--tenant", help="default: the user's tenant")
    p.add_argument("--role", help="default: the user's role")
    p.add_argument("--no-mfa", action="store_true", help="a token without the MFA claim (to see it refused)")
    p.add_argument(
        "--ttl", type=int, default=3600,
        help="seconds (the service refuses more than PRANEYA_JWT_MAX_LIFETIME_SECONDS; a client's at most 300)"
    )
    p.set_defaults(handler=_guarded(_dev_token))
    p = dev.add_parser("up", help="migrate, load knowledge and rules, seed the demo, serve (what `make run` does)")
    p.set_defaults(handler=_guarded(_dev_up))
    p = dev.add_parser("call", help="call EvaluateSafety on the local service and print the ranked alerts")
    p.add_argument("--user", required=True, help="calling user id (a token is minted for it)")
    p.add_argument("--patient", required=True, help="patient user id to evaluate")
    p.add_argument("--propose", action="append", default=[], help="a proposed medication (repeatable)")
    p.add_argument("--food", action="append", default=[], help="a proposed food (repeatable)")
    p.add_argument("--address", default="127.0.0.1:50051", help="the service's HOST:PORT (default 127.0.0.1:50051)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.set_defaults(handler=_guarded(_dev_call))

    p = sub.add_parser("deploy", help="the seed's deployment steps in order, logged; stops at the first failure")
    p.add_argument("--demo", action="store_true", help="also load knowledge, rules and demo data")
    p.add_argument("--log", help="deployment log file (default .local/deployment.log)")
    p.set_defaults(handler=_deploy)

    demo = sub.add_parser("demo", help="demo data").add_subparsers(dest="d_cmd", required=True, metavar="ACTION")
    p = demo.add_parser("seed", help="the seed's demo scenarios (idempotent; ids in the README)")
    p.set_defaults(handler=_guarded(_demo_seed))
