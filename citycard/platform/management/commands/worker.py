"""`citycard worker`: a Celery worker for this project (extra arguments go to Celery)."""

from __future__ import annotations

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run a Celery worker; arguments after -- are passed to `celery worker`."

    def add_arguments(self, parser):
        parser.add_argument("celery_args", nargs="*")

    def handle(self, *args, **opts):
        from citycard.platform.celery import app

        app.worker_main(["worker", "--loglevel=INFO", *opts["celery_args"]])
