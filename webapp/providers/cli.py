"""``flask providers rotate-keys``: re-encrypt every stored API key under the newest encryption key."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from webapp.providers.services import rotate_encryption

providers = AppGroup("providers", help="Manage users' provider API keys.")


@providers.command("rotate-keys")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(min=1), help="Rows per committed batch.")
def rotate_keys_command(batch: int) -> None:
    """Re-encrypt every stored API key under the first PROVIDER_KEY_ENCRYPTION_KEYS entry.

    Rotation: prepend a new key to PROVIDER_KEY_ENCRYPTION_KEYS (comma-separated, newest
    first) everywhere the app runs, restart it, run this command, and drop the old key
    only once it reports that no key is left behind.
    """
    summary = rotate_encryption(batch_size=batch)
    click.echo(f"{summary.rotated} API key(s) re-encrypted under the newest encryption key.")
    if summary.behind:
        ids = ", ".join(str(config_id) for config_id in summary.behind)
        raise click.ClickException(
            f"{len(summary.behind)} key(s) are not under the newest key (config ids: {ids}); "
            "they cannot be decrypted with any configured key or changed meanwhile. Keep the old keys "
            "configured, and run the command again or ask their owners to replace them."
        )
    click.echo("Every stored key is under the newest encryption key; older keys may now be removed.")
