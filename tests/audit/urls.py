"""A test-only page that changes data, to see the request's user and URL in the history."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.http import require_POST

from clinic.core.models import Organization


@require_POST
def organization_rename(request: HttpRequest, pk: int) -> HttpResponse:
    Organization.objects.filter(pk=pk).update(name=request.POST["name"])
    return HttpResponse(status=204)


urlpatterns = [
    path("audit-test/organizations/<int:pk>/rename/", organization_rename),
]
