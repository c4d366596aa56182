"""Text from outside (file names, names from files) as it may be shown to a person."""


def shown(text: str) -> str:
    """``text`` with control characters (escape codes, newlines) and characters that are not text (a
    file name's undecodable bytes, lone surrogates) written as escapes, so they are seen, not obeyed."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
