def demo_step(ctx) -> None:
    pass
