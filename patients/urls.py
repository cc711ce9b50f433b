"""The desk's patient pages, under /desk/patients/."""

from django.urls import path

from . import views

app_name = "patients"

urlpatterns = [
    path("", views.search, name="search"),
    path("results/", views.search_results, name="search_results"),
    path("new/", views.register, name="register"),
    path("cards/out/", views.cards_out, name="cards_out"),
    path("cards/<uuid:public_id>/", views.card_detail, name="card_detail"),
    path("cards/<uuid:public_id>/issue/", views.card_issue, name="card_issue"),
    path("cards/<uuid:public_id>/return/", views.card_return, name="card_return"),
    path("duplicates/", views.duplicates, name="duplicates"),
    path("duplicates/merge/", views.merge, name="merge"),
    path("<uuid:public_id>/", views.detail, name="detail"),
    path("<uuid:public_id>/edit/", views.edit, name="edit"),
    path("<uuid:public_id>/contacts/", views.contact_add, name="contact_add"),
    path("<uuid:public_id>/consents/", views.consent_give, name="consent_give"),
    path(
        "<uuid:public_id>/consents/<uuid:consent_id>/revoke/",
        views.consent_revoke,
        name="consent_revoke",
    ),
    path("<uuid:public_id>/relations/", views.relation_add, name="relation_add"),
    path("<uuid:public_id>/cards/", views.card_open, name="card_open"),
    path("<uuid:public_id>/unmerge/", views.unmerge, name="unmerge"),
]
