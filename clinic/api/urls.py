from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import views

app_name = "api"

v1: list[URLPattern | URLResolver] = [
    path("me/", views.MeView.as_view(), name="me"),
    path("branches/", views.BranchListView.as_view(), name="branch-list"),
    path("rooms/", views.RoomListView.as_view(), name="room-list"),
    path("staff/", views.StaffListView.as_view(), name="staff-list"),
    path("outbox/", include("clinic.outbox.api")),
    path("", include("patients.api")),
    path("scheduling/", include("scheduling.api.urls")),
]

urlpatterns = [
    path("v1/", include((v1, "v1"))),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
