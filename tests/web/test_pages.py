"""The UI shell through the Django test client: who opens which workplace, where each role
lands, the login, two-factor and lockout pages, the public portal, the error pages, the
language switcher, and that no page breaks the strict Content-Security-Policy.

Text is asserted only on pages requested in English (the ``en`` cookie): the default language
is Russian and its translations are maintained separately.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any, cast

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.exceptions import PermissionDenied
from django.test import Client, RequestFactory
from django.utils import translation
from django.views import defaults
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic.accounts.models import User
from clinic.audit.models import SecurityEvent, SecurityEventKind
from clinic.core.models import Branch, Staff
from clinic.core.roles import (
    ROLE_CAPABILITIES,
    ROLE_HOME,
    WORKPLACE_CAPABILITIES,
    Role,
    Workplace,
)
from clinic.web.context_processors import WORKPLACE_URLS
from clinic.web.templatetags.clinic_web import duration
from tests.core.factories import BranchFactory, SpecialtyFactory, UserFactory, staff_with_role

PASSWORD = "correct-horse-battery"

# The workplaces served by the shell itself (the administration is Django's admin).
WEB_WORKPLACES = [Workplace.DESK, Workplace.DOCTOR, Workplace.POS, Workplace.LAB]
# Workplaces whose landing page is the shell's own; the cash desk's is billing's POS page.
SHELL_WORKPLACES = [Workplace.DESK, Workplace.DOCTOR, Workplace.LAB]

# Which of those each role opens, written out so that a change of the matrix shows up here.
OPENS: dict[str, set[str]] = {
    Role.REGISTRAR: {Workplace.DESK},
    Role.CALL_CENTRE: {Workplace.DESK},
    Role.DOCTOR: {Workplace.DOCTOR},
    Role.NURSE: {Workplace.DOCTOR},
    Role.CASHIER: {Workplace.POS},
    Role.LAB_TECHNICIAN: {Workplace.LAB},
    Role.HEAD_OF_REGISTRY: {Workplace.DESK},
    Role.ACCOUNTANT: {Workplace.POS},
    Role.ADMINISTRATOR: set(),
}

# Where ``/`` sends each role; None: nowhere (403 "no workplace").
HOME_URL: dict[str, str | None] = {
    Role.REGISTRAR: "/desk/",
    Role.CALL_CENTRE: "/desk/",
    Role.DOCTOR: "/doctor/",
    Role.NURSE: "/doctor/",
    Role.CASHIER: "/pos/",
    Role.LAB_TECHNICIAN: "/lab/",
    Role.HEAD_OF_REGISTRY: "/desk/",
    Role.ACCOUNTANT: "/pos/",
    Role.ADMINISTRATOR: "/admin/",
}


# ---- helpers ------------------------------------------------------------------------------


class _PageScan(HTMLParser):
    """Collects what the Content-Security-Policy would block and a few landmarks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.html_lang: str | None = None
        self.violations: list[str] = []
        self.nav_links: list[str] = []
        self._in_script = False
        self._in_nav = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "html":
            self.html_lang = attributes.get("lang")
        if tag == "script":
            self._in_script = True
            if not attributes.get("src"):
                self.violations.append("<script> without src")
        if tag == "style":
            self.violations.append("<style> element")
        if tag == "nav":
            self._in_nav = True
        if tag == "a" and self._in_nav:
            self.nav_links.append(attributes.get("href") or "")
        for name, value in attrs:
            if name == "style":
                self.violations.append(f'style="{value}" on <{tag}>')
            if name.startswith("on"):
                self.violations.append(f"inline handler {name} on <{tag}>")
            if value and value.strip().lower().startswith("javascript:"):
                self.violations.append(f"javascript: URL in {name} on <{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False
        if tag == "nav":
            self._in_nav = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.violations.append(f"inline script body: {data.strip()[:60]}")


def scan(content: bytes | str) -> _PageScan:
    parser = _PageScan()
    parser.feed(content.decode() if isinstance(content, bytes) else content)
    parser.close()
    return parser


def assert_csp_clean(content: bytes | str) -> None:
    assert scan(content).violations == []


def verify_second_factor(client: Client, user: User) -> TOTPDevice:
    """Mark the client's session as having passed TOTP, as the two-factor page would."""
    device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return device


def user_of(staff: Staff) -> User:
    """The staff member's login (the factories always create one)."""
    assert staff.user is not None
    return staff.user


def make_branch(**kwargs: Any) -> Branch:
    return cast(Branch, BranchFactory(**kwargs))


def log_in(client: Client, staff: Staff) -> None:
    client.force_login(user_of(staff))
    if user_of(staff).groups.filter(name__in=settings.TWO_FACTOR_ROLES).exists():
        verify_second_factor(client, user_of(staff))


def current_code(device: TOTPDevice) -> str:
    code = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)
    return f"{code:0{device.digits}d}"


@pytest.fixture
def en_client(client: Client) -> Client:
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    return client


@pytest.fixture
def staff_in(db: Any) -> Callable[..., Staff]:
    """A staff member of one role, logged in (and past two-factor where the role needs it)."""

    def make(role: str, client: Client, **kwargs: Any) -> Staff:
        staff = staff_with_role(role, **kwargs)
        log_in(client, staff)
        return staff

    return make


# ---- the role matrix as seen by the pages ----------------------------------------------------


def test_written_out_tables_match_the_role_matrix() -> None:
    """OPENS and HOME_URL above are the same matrix as clinic/core/roles.py."""

    def opens(role: str, workplace: str) -> bool:
        return bool(WORKPLACE_CAPABILITIES[workplace] & ROLE_CAPABILITIES[role])

    assert {role: {wp for wp in WEB_WORKPLACES if opens(role, wp)} for role in Role} == OPENS
    assert {
        role: WORKPLACE_URLS[ROLE_HOME[role]] if opens(role, ROLE_HOME[role]) else None
        for role in Role
    } == HOME_URL


def test_workplace_urls_are_the_routed_ones() -> None:
    from django.urls import reverse

    assert {code: WORKPLACE_URLS[code] for code in SHELL_WORKPLACES} == {
        code: reverse(f"web:{code}") for code in SHELL_WORKPLACES
    }
    assert reverse("pos:page") == WORKPLACE_URLS[Workplace.POS]
    assert reverse("admin:index") == WORKPLACE_URLS[Workplace.ADMIN]


@pytest.mark.parametrize("role", list(Role))
def test_the_cash_desk_opens_for_cashiers_and_sends_accountants_to_the_reports(
    en_client: Client, staff_in: Callable[..., Staff], role: str
) -> None:
    staff_in(role, en_client)
    response = en_client.get(WORKPLACE_URLS[Workplace.POS])
    if role == Role.CASHIER:
        assert response.status_code == 200
        assert response.templates[0].name == "billing/pos/page.html"
        assert_csp_clean(response.content)
    elif role == Role.ACCOUNTANT:
        assert response.status_code == 302
        assert response["Location"] == "/billing/reports/revenue/"
    else:
        assert Workplace.POS not in OPENS[role]
        assert response.status_code == 403


@pytest.mark.parametrize("workplace", SHELL_WORKPLACES)
@pytest.mark.parametrize("role", list(Role))
def test_workplace_page_opens_only_for_roles_it_belongs_to(
    en_client: Client, staff_in: Callable[..., Staff], role: str, workplace: str
) -> None:
    staff_in(role, en_client)
    response = en_client.get(WORKPLACE_URLS[workplace])
    label = str(Workplace(workplace).label)
    if workplace in OPENS[role]:
        assert response.status_code == 200
        assert response.templates[0].name == "web/workplace.html"
        assert response.context["workplace"] == workplace
        assert f'data-workplace-title="{workplace}"' in response.content.decode()
    else:
        assert response.status_code == 403
        assert response.templates[0].name == "web/denied.html"
        assert response.context["workplace"] == label
        assert "This workplace is not open to you" in response.content.decode()
    assert_csp_clean(response.content)


def test_denied_workplace_is_recorded_and_offers_the_users_own(
    en_client: Client, staff_in: Callable[..., Staff]
) -> None:
    staff = staff_in(Role.CASHIER, en_client)
    response = en_client.get("/doctor/")
    assert response.status_code == 403
    events = list(SecurityEvent.objects.filter(kind=SecurityEventKind.ACCESS_DENIED))
    assert [(e.user_id, e.detail, e.path) for e in events] == [
        (user_of(staff).pk, "workplace doctor", "/doctor/")
    ]
    html = response.content.decode()
    assert "Your role does not open the workplace “Doctor&#x27;s workplace”." in html
    assert scan(html).nav_links == ["/pos/"]
    assert 'class="button button--secondary" href="/pos/"' in html


@pytest.mark.parametrize("role", list(Role))
def test_home_sends_each_role_to_its_workplace(
    en_client: Client, staff_in: Callable[..., Staff], role: str
) -> None:
    staff_in(role, en_client)
    response = en_client.get("/")
    if HOME_URL[role] is None:
        assert response.status_code == 403
        assert response.templates[0].name == "web/no_workplace.html"
        assert "No workplace is assigned to you" in response.content.decode()
    else:
        assert response.status_code == 302
        assert response["Location"] == HOME_URL[role]


def test_home_for_a_user_without_a_role_explains_and_offers_logout(
    en_client: Client, db: Any
) -> None:
    staff = staff_with_role(Role.DOCTOR)
    user_of(staff).groups.clear()
    en_client.force_login(user_of(staff))
    response = en_client.get("/")
    assert response.status_code == 403
    assert response.templates[0].name == "web/no_workplace.html"
    html = response.content.decode()
    assert "No workplace is assigned to you" in html
    assert f"You are logged in as <strong>{staff.short_name}</strong>" in html
    assert html.count('action="/accounts/logout/"') == 2  # the top bar's and the page's own
    assert scan(html).nav_links == []
    assert_csp_clean(html)


def test_anonymous_user_is_sent_to_login(client: Client, db: Any) -> None:
    for url in ["/", "/desk/", "/doctor/", "/pos/", "/lab/"]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"] == f"/accounts/login/?next={url}"


# ---- the workplace landing page -----------------------------------------------------------


def test_workplace_page_shows_staff_card_branches_and_capabilities(
    en_client: Client, staff_in: Callable[..., Staff]
) -> None:
    specialty = SpecialtyFactory(name="Cardiology")
    staff = staff_in(Role.DOCTOR, en_client, specialty=specialty, position="Cardiologist")
    second = make_branch(
        organization=staff.organization, name="North", address="Tverskaya 1", phone=""
    )
    staff.branches.add(second)
    other = make_branch(name="Somebody else's branch")

    response = en_client.get("/doctor/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1" in html and "Doctor&#x27;s workplace</h1>" in html
    assert f"<strong data-staff-name>{staff.full_name}</strong>" in html
    assert "<dd>Cardiologist</dd>" in html
    assert "<dd>Cardiology</dd>" in html
    assert f"<dd>{staff.organization.short_name}</dd>" in html
    assert '<li class="tag">Doctor</li>' in html
    assert [b.name for b in response.context["branches"]] == sorted(
        [staff.branches.exclude(pk=second.pk).get().name, "North"]
    )
    assert "Tverskaya 1" in html
    assert other.name not in html
    assert response.context["capabilities"] == [
        "View the schedule",
        "Open medical cards",
        "Write medical records",
        "Sign medical records",
    ]
    assert "What you can do here" in html
    for label in response.context["capabilities"]:
        assert f"<li>{label}</li>" in html
    assert f"<strong data-user-name>{staff.short_name}</strong>" in html
    assert scan(html).nav_links == ["/doctor/"]
    assert 'href="/doctor/" data-workplace="doctor" aria-current="page"' in html


def test_workplace_page_for_a_login_without_staff_record(en_client: Client, db: Any) -> None:
    user = cast(User, UserFactory(username="orphan", roles=[Role.CASHIER]))
    en_client.force_login(user)
    # Without a staff record the user is not active staff, so no workplace opens.
    response = en_client.get("/pos/")
    assert response.status_code == 403


def test_superuser_sees_every_branch_and_a_note_instead_of_a_staff_card(
    en_client: Client, db: Any, django_user_model: type[User]
) -> None:
    user = django_user_model.objects.create_superuser("root", "root@example.org", PASSWORD)
    en_client.force_login(user)
    verify_second_factor(en_client, user)
    make_branch(name="Central")
    response = en_client.get("/desk/")
    assert response.status_code == 200
    html = response.content.decode()
    assert response.context["staff"] is None
    assert "The login <strong>root</strong> is not linked to a staff member." in html
    assert "<strong data-user-name>root</strong>" in html
    assert "Central" in html
    assert scan(html).nav_links == ["/desk/", "/doctor/", "/pos/", "/lab/", "/admin/"]


def test_workplace_page_costs_a_fixed_number_of_queries(
    client: Client, staff_in: Callable[..., Staff], django_assert_max_num_queries: Any
) -> None:
    staff = staff_in(Role.REGISTRAR, client, specialty=SpecialtyFactory())
    staff.branches.add(*[make_branch(organization=staff.organization) for _ in range(4)])
    with django_assert_max_num_queries(12):
        response = client.get("/desk/")
    assert response.status_code == 200
    assert len(response.context["branches"]) == 5


# ---- the public portal ------------------------------------------------------------------------


def test_portal_is_public_and_lists_active_branches(
    en_client: Client, db: Any, django_assert_max_num_queries: Any
) -> None:
    branch = make_branch(name="Central clinic", address="Moscow, Arbat 10", phone="+74951112233")
    make_branch(name="Closed branch", is_active=False)
    with django_assert_max_num_queries(2):
        response = en_client.get("/portal/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Central clinic" in html
    assert "Moscow, Arbat 10" in html
    assert '<a href="tel:+74951112233">+74951112233</a>' in html
    assert f"{branch.organization.short_name}</p>" in html
    assert "Closed branch" not in html
    assert 'aria-label="Workplaces"' not in html  # no staff navigation for the public
    assert '<a class="button button--ghost" href="/accounts/login/">Staff login</a>' in html
    assert 'action="/accounts/logout/"' not in html
    assert_csp_clean(html)


def test_portal_for_logged_in_staff_leads_back_to_work(
    en_client: Client, staff_in: Callable[..., Staff]
) -> None:
    staff_in(Role.CASHIER, en_client)
    response = en_client.get("/portal/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<a href="/">Back to work</a>' in html  # the public page, with the way back
    assert 'aria-label="Workplaces"' not in html


# ---- login, two-factor, lockout ------------------------------------------------------------


def test_login_page_renders_the_form(en_client: Client, db: Any) -> None:
    response = en_client.get("/accounts/login/?next=/pos/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<input type="hidden" name="next" value="/pos/">' in html
    assert 'name="username"' in html and 'name="password"' in html
    assert "session ended" not in html
    assert "<nav" not in html
    assert_csp_clean(html)


def test_login_page_after_idle_timeout_says_so(en_client: Client, db: Any) -> None:
    response = en_client.get("/accounts/login/?next=/desk/&expired=1")
    html = response.content.decode()
    assert 'data-notice="expired"' in html
    assert "Your session ended because the computer was left idle." in html


def test_wrong_password_shows_the_error(en_client: Client, db: Any) -> None:
    staff = staff_with_role(Role.DOCTOR)
    response = en_client.post(
        "/accounts/login/", {"username": user_of(staff).username, "password": "wrong-password"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert '<ul class="form-errors" role="alert" data-form-errors>' in html
    assert "Please enter a correct username and password." in html
    assert f'value="{user_of(staff).username}"' in html
    assert_csp_clean(html)


def test_empty_login_shows_field_errors(en_client: Client, db: Any) -> None:
    response = en_client.post("/accounts/login/", {"username": "", "password": ""})
    html = response.content.decode()
    assert 'data-field-errors="username"' in html
    assert 'data-field-errors="password"' in html
    assert html.count("This field is required.") == 2


@pytest.mark.parametrize("role", [Role.DOCTOR, Role.CASHIER, Role.REGISTRAR])
def test_login_lands_in_the_home_workplace(client: Client, db: Any, role: str) -> None:
    staff = staff_with_role(role)
    response = client.post(
        "/accounts/login/", {"username": user_of(staff).username, "password": PASSWORD}, follow=True
    )
    assert response.redirect_chain == [("/", 302), (str(HOME_URL[role]), 302)]
    assert response.status_code == 200


@pytest.mark.parametrize("role", [Role.ADMINISTRATOR, Role.HEAD_OF_REGISTRY])
def test_privileged_login_goes_to_two_factor_enrolment(
    en_client: Client, db: Any, role: str
) -> None:
    staff = staff_with_role(role)
    response = en_client.post(
        "/accounts/login/", {"username": user_of(staff).username, "password": PASSWORD}, follow=True
    )
    assert response.redirect_chain == [("/", 302), ("/accounts/two-factor/?next=/", 302)]
    assert response.status_code == 200
    assert response.context["enrolling"] is True
    html = response.content.decode()
    assert "Set up two-factor login" in html
    assert "scan this QR code" in html
    assert '<img class="qr" src="data:image/svg+xml;base64,' in html
    assert f'<code class="secret" data-secret>{response.context["secret"]}</code>' in html
    assert '<input type="hidden" name="next" value="/">' in html
    assert 'action="/accounts/two-factor/"' in html
    assert scan(html).nav_links == []
    assert_csp_clean(html)
    # Nothing else opens before the second factor.
    assert en_client.get(str(HOME_URL[role]))["Location"].startswith("/accounts/two-factor/")


def test_enrolment_code_confirms_the_device_and_opens_the_workplace(
    en_client: Client, db: Any
) -> None:
    staff = staff_with_role(Role.HEAD_OF_REGISTRY)
    en_client.force_login(user_of(staff))
    en_client.get("/accounts/two-factor/?next=/desk/")
    device = TOTPDevice.objects.get(user=user_of(staff), confirmed=False)
    response = en_client.post(
        "/accounts/two-factor/", {"token": current_code(device), "next": "/desk/"}, follow=True
    )
    assert response.redirect_chain == [("/desk/", 302)]
    assert response.status_code == 200
    device.refresh_from_db()
    assert device.confirmed is True


def test_two_factor_with_a_device_asks_for_the_code_and_shows_a_wrong_one(
    en_client: Client, db: Any
) -> None:
    staff = staff_with_role(Role.ADMINISTRATOR)
    TOTPDevice.objects.create(user=user_of(staff), name="authenticator", confirmed=True)
    en_client.force_login(user_of(staff))
    response = en_client.get("/accounts/two-factor/?next=/admin/")
    assert response.context["enrolling"] is False
    html = response.content.decode()
    assert "type the current six-digit code" in html
    assert "data-qr" not in html and "data-secret" not in html

    response = en_client.post("/accounts/two-factor/", {"token": "12345x", "next": "/admin/"})
    html = response.content.decode()
    assert 'data-field-errors="token"' in html
    assert "must consist of digits" in html
    assert '<input type="hidden" name="next" value="/admin/">' in html
    assert_csp_clean(html)


def test_lockout_page_explains_and_spares_other_users(en_client: Client, db: Any) -> None:
    victim = staff_with_role(Role.REGISTRAR)
    colleague = staff_with_role(Role.CASHIER)
    credentials = {"username": user_of(victim).username, "password": "wrong-password"}
    statuses = [
        en_client.post("/accounts/login/", credentials).status_code
        for _ in range(settings.AXES_FAILURE_LIMIT)
    ]
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]

    response = en_client.post(
        "/accounts/login/", {"username": user_of(victim).username, "password": PASSWORD}
    )
    assert response.status_code == 429
    html = response.content.decode()
    assert "Too many failed login attempts" in html
    assert f"<strong>{user_of(victim).username}</strong>" in html
    assert f"The limit is {settings.AXES_FAILURE_LIMIT} failed attempts." in html
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    assert f"You can try again in {minutes} minutes." in html
    assert "Other users can still log in at this computer" in html
    assert "contact the administrator" in html
    assert_csp_clean(html)

    other = en_client.post(
        "/accounts/login/", {"username": user_of(colleague).username, "password": PASSWORD}
    )
    assert other.status_code == 302


def test_lockout_page_without_axes_details_uses_general_wording(en_client: Client, db: Any) -> None:
    from django.template.loader import render_to_string

    html = render_to_string("accounts/locked_out.html", {}, request=RequestFactory().get("/"))
    assert "You can try again later." in html
    assert "The limit is" not in html


def test_logout_ends_the_session(client: Client, staff_in: Callable[..., Staff]) -> None:
    staff_in(Role.DOCTOR, client)
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"
    assert client.get("/doctor/")["Location"] == "/accounts/login/?next=/doctor/"


# ---- language ------------------------------------------------------------------------------


def test_pages_are_russian_by_default(client: Client, db: Any) -> None:
    for url in ["/portal/", "/accounts/login/"]:
        response = client.get(url)
        assert scan(response.content).html_lang == "ru"
        pressed = re.findall(
            r'<button[^>]*value="(\w+)"[^>]*aria-pressed="true"', response.content.decode()
        )
        assert pressed == ["ru"]


def test_language_switcher_switches_to_english_and_back(client: Client, db: Any) -> None:
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/portal/"})
    assert response.status_code == 302
    assert response["Location"] == "/portal/"
    page = client.get("/portal/")
    assert scan(page.content).html_lang == "en"
    assert "Our branches" in page.content.decode()

    client.post("/i18n/setlang/", {"language": "ru", "next": "/portal/"})
    assert scan(client.get("/portal/").content).html_lang == "ru"


def test_language_switcher_keeps_a_logged_in_user_on_their_page(
    client: Client, staff_in: Callable[..., Staff]
) -> None:
    staff_in(Role.LAB_TECHNICIAN, client)
    page = client.get("/lab/")
    html = page.content.decode()
    assert '<form class="inline-form" action="/i18n/setlang/" method="post">' in html
    assert '<input type="hidden" name="next" value="/lab/">' in html
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/lab/"})
    assert response["Location"] == "/lab/"
    page = client.get("/lab/")
    assert scan(page.content).html_lang == "en"
    assert "What you can do here" in page.content.decode()
    assert page.context["capabilities"] == [
        "Receive lab specimens",
        "Enter and validate lab results",
    ]


# ---- error pages ---------------------------------------------------------------------------


def test_not_found_page(en_client: Client, db: Any) -> None:
    response = en_client.get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Page not found" in html
    assert 'href="/portal/">Go to the start page' in html
    assert_csp_clean(html)


def test_permission_denied_page(db: Any) -> None:
    from django.contrib.auth.models import AnonymousUser
    from django.utils.translation import override

    request = RequestFactory().get("/somewhere/")
    request.user = AnonymousUser()
    with override("en"):
        response = defaults.permission_denied(request, PermissionDenied())
    assert response.status_code == 403
    html = response.content.decode()
    assert '<h1 id="error-title" class="card__title">Access denied</h1>' in html
    assert 'href="/portal/">Go to the start page' in html
    assert_csp_clean(html)


def test_server_error_page_needs_no_request_context() -> None:
    """Django renders 500.html with an empty context; it must not touch the database."""
    response = defaults.server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    html = response.content.decode()
    assert 'href="/static/css/app.css"' in html
    assert '<span class="status-code" aria-hidden="true">500</span>' in html
    assert_csp_clean(html)


def test_csrf_failure_page(db: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    response = client.post("/accounts/login/", {"username": "x", "password": "y"})
    assert response.status_code == 403
    html = response.content.decode()
    assert "The form has expired" in html
    assert_csp_clean(html)


def test_messages_are_shown_with_their_level() -> None:
    from django.contrib.messages import constants
    from django.contrib.messages.storage.base import Message
    from django.template.loader import render_to_string

    html = render_to_string(
        "base.html",
        {"messages": [Message(constants.SUCCESS, "Saved."), Message(constants.ERROR, "Failed.")]},
    )
    assert '<ul class="messages" data-messages aria-live="polite"' in html
    assert re.search(r"data-messages[^>]*\bhidden\b", html) is None
    assert re.findall(r'<li class="message message--(\w+)" role="(\w+)"', html) == [
        ("success", "status"),
        ("error", "alert"),
    ]
    assert '<span class="message__text">Saved.</span>' in html


def test_message_list_is_hidden_when_empty() -> None:
    from django.template.loader import render_to_string

    html = render_to_string("base.html", {})
    assert re.search(r"<ul class=\"messages\" data-messages[^>]*\bhidden>", html) is not None


# ---- shell assets ----------------------------------------------------------------------------


def test_shell_loads_only_local_assets(client: Client, db: Any) -> None:
    html = client.get("/portal/").content.decode()
    assert '<script src="/static/vendor/htmx/htmx.min.js" defer></script>' in html
    assert '<script src="/static/js/app.js" defer></script>' in html
    assert '<link rel="stylesheet" href="/static/css/app.css">' in html
    assert "http://" not in html and "https://" not in html
    assert '"includeIndicatorStyles": false' in html
    assert 'data-hx-headers=\'{"X-CSRFToken": "' in html
    for path in ["vendor/htmx/htmx.min.js", "vendor/htmx/LICENSE", "js/app.js", "css/app.css"]:
        assert finders.find(path) is not None, path


def test_csrf_header_for_htmx_is_the_pages_token(client: Client, db: Any) -> None:
    response = client.get("/portal/")
    token = response.context["csrf_token"]
    assert f'data-hx-headers=\'{{"X-CSRFToken": "{token}"}}\'' in response.content.decode()


def test_every_response_carries_the_strict_policy(client: Client, db: Any) -> None:
    policy = client.get("/portal/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "style-src 'self'" in policy


# ---- the duration filter -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("PT15M", "15 minutes"),
        ("PT1M", "1 minute"),
        ("PT1H30M", "1 hour 30 minutes"),
        ("PT2H", "2 hours"),
        ("PT20S", "1 minute"),
        ("P1D", "24 hours"),
        ("", ""),
        (None, ""),
        ("PT0S", ""),
        ("nonsense", ""),
    ],
)
def test_duration_in_words(value: Any, words: str) -> None:
    with translation.override("en"):
        assert duration(value) == words


def test_capability_labels_follow_the_declared_order() -> None:
    from clinic.web.views import _capability_labels

    with translation.override("en"):
        labels = _capability_labels([Role.ADMINISTRATOR, Role.CASHIER])
    assert labels == [
        "View the schedule",
        "Change work schedules",
        "Merge and unmerge patients",
        "Take payments",
        "Refund payments",
        "Open and close cash shifts",
        "Change price lists and contracts",
        "Manage staff, roles and access",
        "Change reference data and settings",
        "View change history and access logs",
        "Inspect and re-queue outbox messages",
        "Read patients' ratings and close their tasks",
    ]
