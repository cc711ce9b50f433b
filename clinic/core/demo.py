"""Demo data: one organization with two branches, rooms, doctors and one login per role.

Used by ``manage.py load_demo`` (the run command calls it on first start). Idempotent: a second
run finds the demo organization and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from .models import Branch, Department, Organization, Room, RoomType, Specialty
from .roles import Role
from .services import staff_create

DEMO_INN = "7707083893"
DEMO_PASSWORD_SUFFIX = "-demo-2026"  # noqa: S105  (published demo logins)

SPECIALTIES = [
    ("27", "Терапевт"),
    ("49", "Педиатр"),
    ("23", "Кардиолог"),
    ("45", "Невролог"),
    ("54", "Оториноларинголог"),
    ("59", "Офтальмолог"),
    ("63", "Стоматолог-терапевт"),
    ("37", "Акушер-гинеколог"),
    ("109", "Врач ультразвуковой диагностики"),
    ("26", "Дерматовенеролог"),
]

DOCTORS = [
    ("Петрова", "Анна", "Сергеевна", "27", 0),
    ("Смирнов", "Алексей", "Игоревич", "27", 1),
    ("Кузнецова", "Мария", "Павловна", "49", 0),
    ("Волков", "Дмитрий", "Андреевич", "23", 0),
    ("Соколова", "Елена", "Викторовна", "45", 1),
    ("Морозов", "Игорь", "Николаевич", "54", 0),
    ("Новикова", "Ольга", "Дмитриевна", "59", 1),
    ("Фёдоров", "Сергей", "Олегович", "63", 0),
    ("Лебедева", "Татьяна", "Юрьевна", "37", 1),
    ("Козлов", "Павел", "Александрович", "109", 0),
    ("Егорова", "Наталья", "Ивановна", "26", 1),
]

ROLE_USERS = [
    (Role.REGISTRAR, "registrar", "Орлова", "Светлана", "Регистратор"),
    (Role.CALL_CENTRE, "callcentre", "Зайцева", "Ирина", "Оператор колл-центра"),
    (Role.DOCTOR, "doctor", "Петрова", "Анна", "Врач-терапевт"),
    (Role.NURSE, "nurse", "Белова", "Галина", "Медицинская сестра"),
    (Role.CASHIER, "cashier", "Григорьева", "Людмила", "Кассир"),
    (Role.LAB_TECHNICIAN, "labtech", "Тихонов", "Роман", "Лаборант"),
    (Role.HEAD_OF_REGISTRY, "headregistry", "Комарова", "Вера", "Старший администратор"),
    (Role.ACCOUNTANT, "accountant", "Медведева", "Алла", "Бухгалтер"),
    (Role.ADMINISTRATOR, "admin", "Антонов", "Кирилл", "Системный администратор"),
]


@dataclass(frozen=True)
class DemoLogin:
    role: str
    username: str
    password: str


def demo_logins() -> list[DemoLogin]:
    return [
        DemoLogin(role=str(role), username=username, password=username + DEMO_PASSWORD_SUFFIX)
        for role, username, *_rest in ROLE_USERS
    ]


def demo_exists() -> bool:
    return Organization.objects.filter(inn=DEMO_INN).exists()


@transaction.atomic
def demo_load() -> bool:
    """Create the demo organization unless it exists; return True when something was created.

    The schedule's demo data is loaded after the staff it links to; a demo database made before
    the schedule existed gets it on the next run.
    """
    if demo_exists():
        return _scheduling_demo_load(Organization.objects.get(inn=DEMO_INN))
    organization = Organization.objects.create(
        name='Общество с ограниченной ответственностью "Клиника Здоровье"',
        short_name="Клиника Здоровье",
        inn=DEMO_INN,
        kpp="770701001",
        ogrn="1027700132195",
        frmo_oid="1.2.643.5.1.13.13.12.2.77.7701",
        address="г. Москва, ул. Тверская, д. 1",
        time_zone="Europe/Moscow",
    )
    branches = [
        Branch.objects.create(
            organization=organization,
            name="Центральный филиал",
            address="г. Москва, ул. Тверская, д. 1",
            phone="+74951234567",
            time_zone="Europe/Moscow",
        ),
        Branch.objects.create(
            organization=organization,
            name="Филиал на Профсоюзной",
            address="г. Москва, ул. Профсоюзная, д. 56",
            phone="+74957654321",
            time_zone="Europe/Moscow",
        ),
    ]
    for branch in branches:
        therapy = Department.objects.create(branch=branch, name="Терапевтическое отделение")
        diagnostics = Department.objects.create(branch=branch, name="Отделение диагностики")
        for number in range(101, 109):
            Room.objects.create(
                branch=branch,
                department=therapy,
                number=str(number),
                name=f"Кабинет {number}",
                room_type=RoomType.CONSULTING,
            )
        Room.objects.create(
            branch=branch,
            department=diagnostics,
            number="201",
            name="Кабинет УЗИ",
            room_type=RoomType.ULTRASOUND,
        )
        Room.objects.create(
            branch=branch,
            department=diagnostics,
            number="202",
            name="Процедурный кабинет",
            room_type=RoomType.PROCEDURE,
        )
        Room.objects.create(
            branch=branch,
            department=diagnostics,
            number="203",
            name="Пункт забора биоматериала",
            room_type=RoomType.SPECIMEN,
        )
    specialties = {
        code: Specialty.objects.get_or_create(code=code, defaults={"name": name})[0]
        for code, name in SPECIALTIES
    }
    doctor_login = next(login for login in demo_logins() if login.role == Role.DOCTOR)
    for last_name, first_name, patronymic, code, branch_index in DOCTORS:
        is_login_doctor = (last_name, first_name) == ("Петрова", "Анна")
        staff_create(
            organization=organization,
            last_name=last_name,
            first_name=first_name,
            patronymic=patronymic,
            position=f"Врач — {specialties[code].name.lower()}",
            specialty=specialties[code],
            branches=[branches[branch_index]] if not is_login_doctor else branches,
            roles=[Role.DOCTOR],
            username=doctor_login.username if is_login_doctor else None,
            password=doctor_login.password if is_login_doctor else None,
        )
    for role, username, last_name, first_name, position in ROLE_USERS:
        if role == Role.DOCTOR:
            continue
        staff = staff_create(
            organization=organization,
            last_name=last_name,
            first_name=first_name,
            position=position,
            branches=branches,
            roles=[role],
            username=username,
            password=username + DEMO_PASSWORD_SUFFIX,
        )
        if role == Role.ADMINISTRATOR and staff.user is not None:
            staff.user.is_staff = True
            staff.user.save(update_fields=["is_staff"])
    if settings.WEBSITE_BOOKING_USERNAME:
        # The account public bookings are made as (the website's FHIR API, the portal): a
        # registrar in every branch, and a cashier for the portal's online payments and
        # documents, with no password, so nobody logs in with it.
        staff_create(
            organization=organization,
            last_name="Сайт",
            first_name="Онлайн-запись",
            position="Учётная запись онлайн-записи",
            branches=branches,
            roles=[Role.REGISTRAR, Role.CASHIER],
            username=settings.WEBSITE_BOOKING_USERNAME,
        )
    _scheduling_demo_load(organization)
    return True


def _scheduling_demo_load(organization: Organization) -> bool:
    # Imported here: the core is imported by every app, so it must not import them at load time.
    from billing.demo import load_demo as billing_demo_load
    from messaging.demo import messaging_demo_load
    from scheduling.demo import scheduling_demo_load

    created = scheduling_demo_load(organization)
    branch = Branch.objects.filter(organization=organization).order_by("pk").first()
    if branch is not None:
        created = billing_demo_load(organization, branch) or created
    return messaging_demo_load(organization) or created
