from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError, connection

from clinic.runtime import mask_password, stop_embedded


class Command(BaseCommand):
    help = "Check that the database and Redis answer (check), or stop the embedded ones (stop)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["check", "stop"])

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "stop":
            stopped = stop_embedded()
            self.stdout.write(
                "Stopped: " + (", ".join(stopped) if stopped else "nothing was running")
            )
            return
        services = settings.SERVICES
        try:
            connection.ensure_connection()
        except OperationalError as error:
            reason = " ".join(str(error).split()) or "no answer"
            raise CommandError(
                f"Cannot connect to the database {mask_password(services.database_url)} "
                f"({reason}): fix DATABASE_URL or unset it to use the embedded PostgreSQL.",
                returncode=2,
            ) from None
        import redis

        try:
            redis.Redis.from_url(services.redis_url, socket_connect_timeout=3).ping()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise CommandError(
                f"Cannot connect to Redis {mask_password(services.redis_url)} ({error}): "
                f"fix REDIS_URL or unset it to use the embedded Redis.",
                returncode=2,
            ) from None
        self.stdout.write(services.describe())
