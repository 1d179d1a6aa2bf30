"""Spotify audio features (valence, energy) for track ids: spotipy + a SQLite cache + our own retries.

The audio-features endpoint takes up to 100 ids per request. Every answer, "no features" (null) for an
unknown id included, goes into the SQLite cache as soon as it arrives: an interrupted run resumes where it
stopped and no id is ever fetched twice. Errors are ours to handle, each ending in one line:
  429             wait Retry-After if it is at most the cap, else stop (the cache keeps everything);
  5xx, no network retry with capped exponential backoff, then stop;
  401, bad creds  stop: check SPOTIPY_CLIENT_ID / SPOTIPY_CLIENT_SECRET;
  403             apps registered after 2024-11-27 get no audio features at all: stop, use --features-table.
"""

import dataclasses
import email.utils
import json
import logging
import os
import sqlite3
import time
import warnings

import requests
import spotipy
from spotipy.cache_handler import MemoryCacheHandler
from spotipy.exceptions import SpotifyException, SpotifyOauthError
from tqdm import tqdm

from facemusic_jax.core.errors import UserError
from facemusic_jax.labels import SPOTIFY_API_PREFIX, SPOTIFY_TOKEN_URL

API_PREFIX = SPOTIFY_API_PREFIX
TOKEN_URL = SPOTIFY_TOKEN_URL
BATCH_SIZE = 100  # the endpoint's maximum
CREDENTIAL_VARS = ("SPOTIPY_CLIENT_ID", "SPOTIPY_CLIENT_SECRET")

FORBIDDEN = ("Spotify answered 403 Forbidden: Spotify closed audio-features to apps registered after "
             "2024-11-27; use --features-table with an offline features table (CSV/Parquet: id, valence, "
             "energy) instead")
_CHECK_CREDENTIALS = f"check your credentials ({', '.join(CREDENTIAL_VARS)})"
def make_client(api_prefix: str = API_PREFIX, token_url: str = TOKEN_URL,
                timeout_s: float = 10.0) -> spotipy.Spotify:
  """A client-credentials spotipy client that never retries or sleeps on its own.

  spotipy's retry adapter sleeps for whatever Retry-After says (Spotify sends an hour and more) and turns
  an exhausted 5xx into a header-less 429, so both sessions are plain `requests.Session`s (no retry
  adapter; retries=0 alone is not enough) and `fetch_audio_features` does the retrying.
  """
  missing = [v for v in CREDENTIAL_VARS if not os.environ.get(v)]
  if missing:
    raise UserError(f"{' and '.join(missing)} not set; export your Spotify app's client credentials, or "
                    "label offline with: python -m facemusic_jax.label features-table --features-table FILE")
  auth = spotipy.SpotifyClientCredentials(requests_session=requests.Session(), requests_timeout=timeout_s,
                                          cache_handler=MemoryCacheHandler())  # no .cache file in the cwd
  auth.OAUTH_TOKEN_URL = token_url  # read through self, so this redirects the token request
  client = spotipy.Spotify(auth_manager=auth, requests_session=requests.Session(), requests_timeout=timeout_s,
                           retries=0, status_retries=0)
  client.prefix = api_prefix
  logging.getLogger("spotipy").setLevel(logging.CRITICAL)  # we report every error ourselves, in one line
  return client


class FeatureCache:
  """Every audio-features answer by track id: the JSON object, or None where Spotify has no features."""

  def __init__(self, path: str):
    self.path = path
    try:
      self._db = sqlite3.connect(path)
      self._db.execute("CREATE TABLE IF NOT EXISTS audio_features "
                       "(id TEXT PRIMARY KEY, answer TEXT, fetched_at REAL)")
    except sqlite3.Error as e:
      raise UserError(f"{path}: cannot use it as the Spotify cache ({e}); give another --cache path") from e

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def close(self):
    self._db.close()

  def __len__(self) -> int:
    return self._db.execute("SELECT COUNT(*) FROM audio_features").fetchone()[0]

  def known_ids(self) -> set:
    return {row[0] for row in self._db.execute("SELECT id FROM audio_features")}

  def get(self, ids) -> dict:
    """{id: answer or None} for the ids the cache holds."""
    ids, found = list(ids), {}
    for start in range(0, len(ids), 500):  # SQLite caps the parameters of one query
      chunk = ids[start:start + 500]
      rows = self._db.execute(f"SELECT id, answer FROM audio_features WHERE id IN ({','.join('?' * len(chunk))})",
                              chunk)
      found.update((i, json.loads(answer)) for i, answer in rows)
    return found

  def put(self, answers: dict) -> None:
    """Stores one batch in one transaction, committed before the next request."""
    now = time.time()
    with self._db:
      self._db.executemany("INSERT OR REPLACE INTO audio_features VALUES (?, ?, ?)",
                           [(i, json.dumps(a), now) for i, a in answers.items()])


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
  max_retry_after_s: float = 60.0  # a longer Retry-After stops the run: rerun later, the cache resumes
  max_rate_limit_waits: int = 10  # 429s in a row for one request
  max_server_retries: int = 5  # 5xx / network errors in a row for one request
  backoff_s: float = 1.0  # first 5xx wait, doubled each time
  max_backoff_s: float = 30.0


def retry_after_s(headers, default: float) -> float:
  """Retry-After in seconds: a number, or an HTTP date."""
  value = (headers or {}).get("Retry-After")
  if value is None:
    return default
  try:
    return max(0.0, float(value))
  except ValueError:
    pass
  try:
    return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
  except (TypeError, ValueError):
    return default


def _request(call, policy: RetryPolicy, sleep):
  """call() with our error policy: waits and retries within the caps, UserError otherwise."""
  rate_limit_waits = failures = 0
  while True:
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # spotipy flags audio_features as deprecated
        return call()
    except SpotifyOauthError as e:
      raise UserError(f"Spotify gave no access token ({e.error}: {e.error_description}); "
                      f"{_CHECK_CREDENTIALS}") from e
    except SpotifyException as e:
      status = e.http_status
      if status == 401:
        raise UserError(f"Spotify answered 401 Unauthorized; {_CHECK_CREDENTIALS}") from e
      if status == 403:
        raise UserError(FORBIDDEN) from e
      if status == 429:
        wait = retry_after_s(e.headers, default=policy.backoff_s)
        if wait > policy.max_retry_after_s:
          raise UserError(f"Spotify rate limit: it asks to wait {wait:.0f} s, more than the "
                          f"{policy.max_retry_after_s:.0f} s cap (--max-retry-after)") from e
        if rate_limit_waits >= policy.max_rate_limit_waits:
          raise UserError(f"Spotify rate limit: still 429 after {rate_limit_waits} waits") from e
        rate_limit_waits += 1
        logging.warning("Spotify rate limit (429): waiting %.1f s as Retry-After asks", wait)
        sleep(wait)
        continue
      if not 500 <= status < 600:
        raise UserError(f"Spotify answered {status}: {e.msg}") from e
      problem = f"Spotify answered {status}"
    except requests.RequestException as e:
      problem = f"cannot reach Spotify ({type(e).__name__})"
    if failures >= policy.max_server_retries:
      raise UserError(f"{problem}, {failures + 1} times in a row; try again later")
    wait = min(policy.max_backoff_s, policy.backoff_s * 2**failures)
    failures += 1
    logging.warning("%s; retrying in %.1f s", problem, wait)
    sleep(wait)


def fetch_audio_features(connect, ids, cache: FeatureCache, policy: RetryPolicy = RetryPolicy(),
                         sleep=time.sleep, progress: bool = True) -> dict:
  """{id: audio-features answer or None} for every id, requesting only the ids the cache lacks.

  `connect()` makes the client (e.g. `make_client`), only when something is left to fetch: a fully cached
  run needs no credentials. A stop (rate limit over the cap, 401, 403, persistent 5xx) raises UserError;
  everything fetched before it is already committed to the cache, and the same call later goes on from there.
  """
  ids = list(dict.fromkeys(ids))
  known = cache.known_ids()
  todo = [i for i in ids if i not in known]
  client = connect() if todo else None
  with tqdm(total=len(todo), desc="spotify audio-features", unit="track", disable=not progress) as bar:
    for start in range(0, len(todo), BATCH_SIZE):
      batch = todo[start:start + BATCH_SIZE]
      try:
        answers = _request(lambda: client.audio_features(batch), policy, sleep)
      except UserError as e:
        raise UserError(f"{e}; {len(ids) - len(todo) + start} of {len(ids)} tracks are safe in the cache "
                        f"{cache.path}, and the same command later resumes from there") from e
      if not isinstance(answers, list) or len(answers) != len(batch):
        raise UserError(f"Spotify answered {len(batch)} ids with {type(answers).__name__} "
                        f"{str(answers)[:80]!r}, not a list of {len(batch)} features; check --spotify-api")
      cache.put(dict(zip(batch, answers)))
      bar.update(len(batch))
  return cache.get(ids)


def valence_energy(answer):
  """(valence, energy) from one audio-features answer; None where there are none."""
  if not isinstance(answer, dict) or answer.get("valence") is None or answer.get("energy") is None:
    return None
  return answer["valence"], answer["energy"]
