"""The small shared place every stage imports: settings, topic names, message schemas, DB access.

Nothing here knows about a particular stage; stages never import each other's internals.
"""
__version__ = "0.1.0"
