#!/usr/bin/env python3
"""Django's command-line utility; configuration problems print one line, not a traceback."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings.base")
    from django.core.management import execute_from_command_line

    from clinic.runtime.errors import RuntimeConfigError

    try:
        execute_from_command_line(sys.argv)
    except RuntimeConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
