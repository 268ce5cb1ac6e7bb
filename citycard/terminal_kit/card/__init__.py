"""The citizen card's e-purse protocol (PBOC e-purse / JT/T 978 command set) and its cryptography."""
