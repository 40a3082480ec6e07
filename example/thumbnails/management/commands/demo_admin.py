"""``manage.py demo_admin``: the demo's superuser, created or given the password in
``DEMO_ADMIN_PASSWORD``, so the admin's worker pages can be opened at ``/admin/``."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

PASSWORD_ENV = "DEMO_ADMIN_PASSWORD"


class Command(BaseCommand):
    help = f"Create the demo's superuser (or reset its password) from ${PASSWORD_ENV}."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        # From the environment, not the command line, where other users could read it.
        password = os.environ.get(PASSWORD_ENV)
        if not password:
            raise CommandError(f"Set {PASSWORD_ENV} to the password the superuser should have.")
        user, _ = User.objects.get_or_create(username=options["username"])
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
