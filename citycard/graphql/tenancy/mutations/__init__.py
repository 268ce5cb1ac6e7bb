from citycard.graphql.tenancy.mutations.tenants import TenantActivate, TenantSuspend

__all__ = ["TenantActivate", "TenantSuspend"]
