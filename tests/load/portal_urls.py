"""The project's URLs plus a trivial API view: the baseline of the portal feed benchmark.

The view goes through the same middleware, DRF dispatch and JSON rendering as every API view,
but reads nothing (no authentication, permission check or throttle), so its rate is what the
server can answer at all; the slot search is measured against it.
"""

from typing import Any

from django.urls import include, path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

TRIVIAL_PATH = "/bench/trivial/"


class TrivialView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []
    schema = None

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


urlpatterns = [
    path(TRIVIAL_PATH.strip("/") + "/", TrivialView.as_view(), name="bench-trivial"),
    path("", include("clinic.urls")),
]
