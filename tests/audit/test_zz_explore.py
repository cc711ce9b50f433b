import pytest
from clinic.audit.selectors import history_for_object
from tests.core.factories import OrganizationFactory
from clinic.core.models import Organization

@pytest.mark.django_db
def test_explore():
    org = OrganizationFactory()
    org.name = "X"
    org.save()
    Organization.objects.filter(pk=org.pk).update(name="Y")
    for e in history_for_object(org):
        print(e.pgh_label, e.pgh_diff, e.pgh_context, e.user, e.url, e.pgh_obj_model, e.pgh_model)
    assert 0
