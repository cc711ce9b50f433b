"""Login, logout and the two-factor step."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters

from .forms import LoginForm, TokenForm
from .services import (
    totp_device_pending,
    totp_qr_svg,
    totp_secret_base32,
    two_factor_verify,
    user_has_confirmed_device,
)


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: object) -> dict[str, object]:
        context = super().get_context_data(**kwargs)
        context["expired"] = self.request.GET.get("expired") == "1"
        return context


class LogoutView(auth_views.LogoutView):
    pass


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or "/"
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return "/"


@sensitive_post_parameters("token")
@login_required
def two_factor(request: HttpRequest) -> HttpResponse:
    """Verify a TOTP code; users without a confirmed device enrol one here first."""
    user: Any = request.user
    if user.is_verified():
        return redirect(_safe_next(request))
    enrolling = not user_has_confirmed_device(request.user)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if two_factor_verify(request=request, token=form.cleaned_data["token"]):
            return redirect(_safe_next(request))
        form.add_error("token", _("The code is wrong or has expired. Try the current one."))
    context: dict[str, object] = {"form": form, "enrolling": enrolling, "next": _safe_next(request)}
    if enrolling:
        device = totp_device_pending(user=request.user)
        context["qr_data_uri"] = totp_qr_svg(device)
        context["secret"] = totp_secret_base32(device)
    return render(request, "accounts/two_factor.html", context)
