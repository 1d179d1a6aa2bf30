"""One home for user-facing errors: a one-line message and a non-zero exit, never a traceback."""

import functools
import sys


class UserError(Exception):
  """A problem the user can fix (bad file, missing data, wrong flag). The message is one line that says
  which input, what is wrong and what to do."""


def exit_on_user_error(main):
  """Wraps an absl `main(argv)` so a UserError (or an unreadable file) prints one line and exits 1."""

  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except UserError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)
    except KeyboardInterrupt:
      print("interrupted", file=sys.stderr)
      sys.exit(130)

  return wrapped
