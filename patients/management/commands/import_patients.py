"""``manage.py import_patients FILE --mapping MAPPING.json --organization INN``: the migration
import of patients from the command line, with its report.

Exit code 0 after an import (rejected rows are part of the report, not a failure); 2 with a
one-line error when the file, the mapping, the organization or the user cannot be used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.translation import gettext as _

from clinic.core.models import Organization
from patients.importing import (
    DEFAULT_BATCH_SIZE,
    ImportFileError,
    ImportInProgressError,
    mapping_load,
    patients_import,
    rejected_rows,
)
from patients.models import ImportRun

USAGE_ERROR = 2


class Command(BaseCommand):
    help = (
        "Import patients from a CSV or XLSX file with a column mapping (JSON: field name → "
        "column header). Rows of people already registered fill in their missing contacts and "
        "cards; an interrupted import of the same file resumes where it stopped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the CSV or XLSX file")
        parser.add_argument(
            "--mapping", required=True, metavar="MAPPING.json", help="the column mapping"
        )
        parser.add_argument(
            "--organization", required=True, metavar="INN", help="the INN of the organization"
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="compute and report everything, change nothing in the registry",
        )
        parser.add_argument(
            "--user", metavar="USERNAME", help="the user the new records are created by"
        )
        parser.add_argument(
            "--show-rejected",
            type=int,
            default=20,
            metavar="N",
            help="how many rejected rows to list (default 20)",
        )
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="ROWS")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(
                _("The file “%(path)s” does not exist.") % {"path": path}, returncode=USAGE_ERROR
            )
        try:
            mapping = mapping_load(options["mapping"])
        except ImportFileError as error:
            raise CommandError(str(error), returncode=USAGE_ERROR) from None
        organization = Organization.objects.filter(inn=options["organization"]).first()
        if organization is None:
            raise CommandError(
                _("There is no organization with INN “%(inn)s”.")
                % {"inn": options["organization"]},
                returncode=USAGE_ERROR,
            )
        user = None
        if options["user"]:
            user_model = get_user_model()
            user = user_model._default_manager.filter(
                **{user_model.USERNAME_FIELD: options["user"]}
            ).first()
            if user is None:
                raise CommandError(
                    _("There is no user “%(username)s”.") % {"username": options["user"]},
                    returncode=USAGE_ERROR,
                )
        started = timezone.now()
        try:
            run = patients_import(
                organization=organization,
                path=path,
                mapping=mapping,
                actor=user,
                dry_run=options["dry_run"],
                batch_size=options["batch_size"],
            )
        except (ImportFileError, ImportInProgressError) as error:
            raise CommandError(str(error), returncode=USAGE_ERROR) from None
        except PermissionDenied:
            raise CommandError(
                _("The user “%(username)s” may not import patients into %(organization)s.")
                % {"username": options["user"], "organization": organization},
                returncode=USAGE_ERROR,
            ) from None
        self._report(run, resumed=run.started_at < started, show=options["show_rejected"])

    def _report(self, run: ImportRun, *, resumed: bool, show: int) -> None:
        write = self.stdout.write
        write(_("File: %(name)s") % {"name": run.file_name})
        write(_("Checksum (SHA-256): %(checksum)s") % {"checksum": run.file_checksum})
        write(
            _("Organization: %(organization)s (INN %(inn)s)")
            % {"organization": run.organization, "inn": run.organization.inn}
        )
        if resumed:
            write(
                _("Resumed the unfinished import of this file started at %(started)s.")
                % {"started": timezone.localtime(run.started_at).strftime("%Y-%m-%d %H:%M:%S")}
            )
        if run.dry_run:
            write(self.style.WARNING(_("Dry run: nothing was written to the registry.")))
        write(
            _(
                "Rows: %(total)d; created: %(created)d; matched: %(matched)d; "
                "merged: %(merged)d; rejected: %(rejected)d."
            )
            % {
                "total": run.rows_done,
                "created": run.created_count,
                "matched": run.matched_count,
                "merged": run.merged_count,
                "rejected": run.rejected_count,
            }
        )
        rejected = rejected_rows(run, limit=max(show, 0))
        if rejected:
            write(
                _("Rejected rows (the first %(shown)d of %(count)d):")
                % {"shown": len(rejected), "count": run.rejected_count}
            )
            for row in rejected:
                write(
                    _("  row %(row)d: %(message)s")
                    % {"row": row.row_number, "message": row.message}
                )
        write(_("Report: import %(id)s") % {"id": run.public_id})
