"""Credit pay-later (信用付) for partner apps: a card's bill and history, paying a merchant on credit."""
