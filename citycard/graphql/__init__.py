"""The GraphQL schemas: partner apps on tenant domains, clearing staff on the platform domain."""
