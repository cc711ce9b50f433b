"""Scheduling: see ARCHITECTURE.md for what this app owns."""
