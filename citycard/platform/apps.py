from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from citycard.platform.permissions import PLATFORM_ROLE_PERMISSIONS


class PlatformConfig(AppConfig):
    name = "citycard.platform"
    label = "platform"
    verbose_name = _("Platform")
    role_permissions = PLATFORM_ROLE_PERMISSIONS
