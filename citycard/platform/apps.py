from django.apps import AppConfig

from citycard.platform.permissions import PLATFORM_ROLE_PERMISSIONS


class PlatformConfig(AppConfig):
    name = "citycard.platform"
    label = "platform"
    verbose_name = "Platform"
    role_permissions = PLATFORM_ROLE_PERMISSIONS
