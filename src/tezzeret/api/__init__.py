"""Stage: api — the forge's HTTP face (FastAPI): `create_app(forge, settings)` in `app`, bearer
tokens with roles in `auth`. It must never do the forge's work itself (no compiling, no direct
store or WAL writes); nothing but the CLI imports it.
"""
