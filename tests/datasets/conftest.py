import os


def stored_files(root) -> list[str]:
    return [os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names]
