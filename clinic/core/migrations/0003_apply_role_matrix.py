from django.db import migrations


def apply_role_matrix(apps, schema_editor):
    from clinic.core.services import roles_sync

    roles_sync(apps=apps)


def remove_role_groups(apps, schema_editor):
    from clinic.core.roles import Role

    apps.get_model("auth", "Group").objects.filter(name__in=[role.value for role in Role]).delete()


class Migration(migrations.Migration):
    """Create the role groups with the capabilities of clinic/core/roles.py."""

    dependencies = [
        ("core", "0002_postgres_extensions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(apply_role_matrix, remove_role_groups)]
