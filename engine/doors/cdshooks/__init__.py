"""CDS Hooks 2.0 (HL7, STU 2.0.1): the parts of the protocol that need no transport.

Discovery (`discovery`), hook request validation (`requests`), cards from an evaluation (`cards`)
and feedback (`feedback`) are pure functions over JSON-shaped values: no I/O, no HTTP server, no
store. The HTTP adapter calls them around the evaluate use case.

Specification text: https://cds-hooks.hl7.org/2.0/ (source: github.com/HL7/cds-hooks, tag v2.0.1,
input/pagecontent/index.md); hook contexts from the hook pages of the same tag (order-select,
order-sign, patient-view, hookVersion 1.0).
"""
