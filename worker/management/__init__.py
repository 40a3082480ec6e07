"""Django management commands: ``python manage.py runworker``."""
