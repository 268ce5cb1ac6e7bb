from django.apps import AppConfig


class GraphQLConfig(AppConfig):
    name = "citycard.graphql"
    label = "citycard_graphql"
    verbose_name = "GraphQL"
    # After the terminals' step: the sample query reads the taps it stored.
    demo_step = "citycard.graphql.demo.demo_step"
    demo_order = 900
