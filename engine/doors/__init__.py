"""The doors: adapters that translate a transport's wire format to and from the use cases.

Each door converts its own wire types at its own edge and calls the same use case; none holds an
evaluation path of its own (DESIGN.md, Layout).
"""
