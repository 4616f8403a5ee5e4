"""The web dashboard (``palaestra dashboard``): FastAPI pages over a read-only store.

``create_app`` lives in ``palaestra.dashboard.app`` (it imports FastAPI); the click commands in
``palaestra.dashboard.commands``.
"""
