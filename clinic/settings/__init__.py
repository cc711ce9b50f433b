"""Settings: ``base`` for every environment, ``test`` for pytest, ``production`` for deployments.

Everything that differs between machines comes from environment variables (see README.md).
"""
