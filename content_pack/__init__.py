"""Content packs: the catalog format, and (later) building, signing, verifying and installing packs.

Usable on its own by pack publishers, without the server.
"""
