"""What every command shares: quiet logging unless asked, and `command NAME` dispatch."""

from absl import flags, logging

from facemusic_jax.core.errors import UserError


def quiet_logging() -> None:
  """Orbax, Grain and TFDS log at INFO on every step; a command shows warnings only unless --verbosity is
  given."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def choose(argv: list[str], table: dict, usage: str, what: str = "subcommand"):
  """The entry of `table` that argv's one positional argument names; a one-line error otherwise. `usage`
  shows the command line, e.g. 'python -m facemusic_jax.evaluate {fer, music} ...'."""
  known = ", ".join(table)
  if len(argv) < 2:
    raise UserError(f"give a {what}: {usage.format(known=known)}")
  if argv[1] not in table:
    raise UserError(f"unknown {what} {argv[1]!r}; use one of: {known}")
  if len(argv) > 2:
    raise UserError(f"unexpected arguments after {argv[1]!r}: {' '.join(argv[2:])}")
  return table[argv[1]]
