from django.contrib.postgres.operations import BtreeGistExtension, TrigramExtension
from django.db import migrations


class Migration(migrations.Migration):
    """Extensions later apps rely on: exclusion constraints (btree_gist), fuzzy search (pg_trgm)."""

    dependencies = [("core", "0001_initial")]

    operations = [BtreeGistExtension(), TrigramExtension()]
