"""VLM backend for an OpenAI-compatible `/v1/chat/completions` server (vLLM, llama.cpp server,
Ollama, a hosted API), on the standard library's `http.client`.

Only anonymized frames exist here (the type enforces it): each is sent as a JPEG base64 data URL.
Each request gets its own connection, so the connect timeout and the read timeout are separate
and a stale keep-alive connection can never fail a request; a TLS handshake is small next to a
VLM answer. Failures are handled in three layers: bounded retries with exponential backoff for
transient failures (5xx, 408, 429, timeouts, connection errors; never other 4xx), a circuit
breaker that stops calling a server that keeps failing (open after N consecutive failed requests,
one trial request after the cool-down), and the engine's OCR fallback above both.
"""
from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import cv2
import numpy as np

from vlm_node.analysis.base import AnalysisBackend
from vlm_node.analysis.config import AnalysisConfig
from vlm_node.analysis.prompt import system_prompt, user_prompt
from vlm_node.analysis.schema import BatchOutputError, ParseOptions, build_schema, parse_answer
from vlm_node.errors import AnalysisError, BackendUnavailableError, ModelOutputError
from vlm_node.frames import AnonymizedFrame
from vlm_node.results import AnalysisResult

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class _Secret:
    """Holds the API key; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        return text.replace(self._value, "***") if self._value else text

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "<hidden>" if self._value else "<none>"

    __str__ = __repr__


class CircuitBreaker:
    """Closed: requests pass. After `threshold` consecutive failures: open, requests fail at
    once. After `cooldown` seconds: half-open, one trial request passes; its success closes the
    circuit, its failure opens it again for another cool-down. Thread-safe."""

    def __init__(self, threshold: int, cooldown: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold, self.cooldown, self._clock = threshold, cooldown, clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self.times_opened = 0

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown:
                return HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """Whether a request may go out now (in half-open state: only the one trial)."""
        with self._lock:
            if self._state == CLOSED:
                return True
            if self._state == OPEN:
                if self._clock() - self._opened_at < self.cooldown:
                    return False
                self._state = HALF_OPEN
            if self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._state, self._failures, self._trial_in_flight = CLOSED, 0, False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == HALF_OPEN or self._failures >= self.threshold:
                if self._state != OPEN:
                    self.times_opened += 1
                self._state, self._opened_at = OPEN, self._clock()
            self._trial_in_flight = False

    def release_trial(self) -> None:
        """End a half-open trial whose outcome was not recorded (no effect otherwise)."""
        with self._lock:
            self._trial_in_flight = False

    def retry_in(self) -> float:
        with self._lock:
            if self._state != OPEN:
                return 0.0
            return max(0.0, self.cooldown - (self._clock() - self._opened_at))

    def snapshot(self) -> dict[str, Any]:
        return {"circuit": self.state, "consecutive_failures": self._failures,
                "circuit_opened": self.times_opened}


@dataclass(frozen=True)
class Endpoint:
    """A parsed base URL: `https://host:port/prefix` (prefix usually `/v1`)."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> "Endpoint":
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendUnavailableError(f"analysis.openai.base_url={url!r} is not an http:// "
                                          f"or https:// URL with a host")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise BackendUnavailableError(f"analysis.openai.base_url={url!r}: {exc}") from exc
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.prefix}{path}"


@dataclass
class HttpResponse:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AnalysisError(f"server answered {self.status} with a body that is not JSON: "
                                f"{self.body[:80]!r}") from exc

    def error_text(self) -> str:
        """The server's error message (OpenAI puts it in error.message), cut short."""
        try:
            data = json.loads(self.body.decode("utf-8"))
            err = data.get("error") if isinstance(data, dict) else None
            msg = err.get("message") if isinstance(err, dict) else (err or data)
            return str(msg)[:200]
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            return self.body[:200].decode("utf-8", "replace")


class TransportError(Exception):
    """No HTTP response: connection refused or reset, timeout, TLS failure."""


class OpenAIBackend(AnalysisBackend):
    name = "openai"
    supports_batching = True  # frames of a batch are requested in parallel; servers batch them
    describes_scene = True

    def __init__(self, config: AnalysisConfig, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] | None = None) -> None:
        self.config = config
        self.oc = config.openai
        self._endpoint: Endpoint | None = None
        self._key = _Secret("")
        self._closing = threading.Event()
        self._sleep = sleep or self._closing.wait  # interruptible by close()
        self.breaker = CircuitBreaker(self.oc.circuit_failures, self.oc.circuit_cooldown, clock)
        self._use_schema = self.oc.use_json_schema
        self._schema_note = ""
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.counts = {"requests": 0, "retries": 0, "timeouts": 0, "http_errors": 0,
                       "connection_errors": 0}

    def __repr__(self) -> str:
        return (f"OpenAIBackend(base_url={self.oc.base_url!r}, model={self.model_id!r}, "
                f"api_key={self._key!r})")

    @property
    def model_id(self) -> str:
        return self.oc.model or self.config.model

    # ------------------------------------------------------------------------------ loading
    def load(self) -> None:
        self._endpoint = Endpoint.parse(self.oc.base_url)
        key = os.environ.get(self.oc.api_key_env, "") if self.oc.api_key_env else ""
        self._key = _Secret(key.strip())
        if not self._key:
            log.info("no API key: environment variable %s is unset; requests carry no "
                     "Authorization header", self.oc.api_key_env)
        self._closing.clear()
        self._pool = ThreadPoolExecutor(self.oc.max_concurrency, thread_name_prefix="vlm_http")
        if self.oc.check_model:
            self._check_model()

    def _check_model(self) -> None:
        base = self.oc.base_url
        try:
            resp = self._http("GET", "/models", None)
        except TransportError as exc:
            raise BackendUnavailableError(f"analysis.openai.base_url={base!r} is not reachable: "
                                          f"{exc}") from exc
        if resp.status in (401, 403):
            raise BackendUnavailableError(
                f"{base} refused the API key ({resp.status}); put a valid key in the "
                f"environment variable named by analysis.openai.api_key_env "
                f"({self.oc.api_key_env})")
        if resp.status == 404:
            log.info("%s has no /models listing; the model name is checked on first use", base)
            return
        if resp.status != 200:
            raise BackendUnavailableError(f"{base}/models answered {resp.status}: "
                                          f"{self._key.scrub(resp.error_text())}")
        data = resp.json()
        ids = [m.get("id") for m in data.get("data", []) if isinstance(m, dict)] \
            if isinstance(data, dict) else []
        if self.model_id not in ids:
            raise BackendUnavailableError(
                f"analysis.openai.model={self.model_id!r} is not served by {base} (it serves "
                f"{ids[:6]}); set analysis.openai.model (or analysis.model)")

    def close(self) -> None:
        self._closing.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def status(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self.counts)
        return {**self.breaker.snapshot(), **counts, "json_schema": self._use_schema,
                **({"json_schema_note": self._schema_note} if self._schema_note else {})}

    # ------------------------------------------------------------------------------- HTTP
    def _http(self, method: str, path: str, body: bytes | None) -> HttpResponse:
        """One request on a fresh connection: connect timeout for the handshake, read timeout
        for every wait on the answer."""
        ep = self._endpoint
        assert ep is not None, "load() first"
        conn_cls = http.client.HTTPSConnection if ep.scheme == "https" else \
            http.client.HTTPConnection
        kwargs: dict[str, Any] = {"timeout": self.oc.connect_timeout}
        if ep.scheme == "https":
            kwargs["context"] = ssl.create_default_context()
        conn = conn_cls(ep.host, ep.port, **kwargs)
        headers = {"Accept": "application/json", "User-Agent": "vlm_node"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._key:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        try:
            conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(self.oc.read_timeout)
            conn.request(method, ep.prefix + path, body=body, headers=headers)
            resp = conn.getresponse()
            return HttpResponse(resp.status, resp.read())
        except (socket.timeout, TimeoutError) as exc:
            self._count("timeouts")
            raise TransportError(f"timed out ({type(exc).__name__})") from exc
        except (OSError, http.client.HTTPException) as exc:
            self._count("connection_errors")
            raise TransportError(f"{type(exc).__name__}: {self._key.scrub(str(exc))}") from exc
        finally:
            conn.close()

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def payload(self, image_b64: str, width: int, height: int, with_schema: bool) -> bytes:
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": [
                {"role": "system", "content": system_prompt()},
                {"role": "user", "content": [
                    {"type": "text", "text": user_prompt(width, height)},
                    {"type": "image_url",
                     "image_url": {"url": f"data:image/jpeg;base64,{image_b64}"}}]},
            ],
            "max_tokens": self.config.max_new_tokens,
            "temperature": 0,
        }
        if with_schema:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "scene_analysis", "schema": build_schema(), "strict": True}}
        return json.dumps(body).encode("utf-8")

    def complete(self, image_b64: str, width: int, height: int) -> str:
        """The answer text for one image: retries, backoff and the circuit breaker."""
        if not self.breaker.allow():
            raise BackendUnavailableError(
                f"{self.oc.base_url}: circuit breaker open after repeated failures; next trial "
                f"in {self.breaker.retry_in():.1f} s")
        try:
            return self._complete(image_b64, width, height)
        finally:
            self.breaker.release_trial()  # an unexpected exception must not wedge half-open

    def _complete(self, image_b64: str, width: int, height: int) -> str:
        attempts = self.oc.retries + 1
        last = ""
        attempt = 0
        while attempt < attempts:
            if self._closing.is_set():
                self.breaker.record_success()  # shutting down is not the server's fault
                raise AnalysisError("backend closed")
            with_schema = self._use_schema
            self._count("requests")
            try:
                resp = self._http("POST", "/chat/completions",
                                  self.payload(image_b64, width, height, with_schema))
            except TransportError as exc:
                last = str(exc)
            else:
                if resp.status == 200:
                    self.breaker.record_success()
                    return self._content(resp)
                if resp.status == 400 and with_schema:
                    # The server does not take this response_format: ask again without it
                    # (not counted as a retry); keep it off only if that then works.
                    retry = self._http_or_none(image_b64, width, height)
                    if retry is not None and retry.status != 400:
                        self._use_schema = False
                        self._schema_note = (f"server rejected response_format json_schema "
                                             f"(400: {self._key.scrub(resp.error_text())[:120]})")
                        log.warning("%s; continuing without it", self._schema_note)
                        resp = retry
                        if resp.status == 200:
                            self.breaker.record_success()
                            return self._content(resp)
                self._count("http_errors")
                message = self._key.scrub(resp.error_text())
                last = f"HTTP {resp.status}: {message}"
                if resp.status not in RETRYABLE_STATUS:
                    # The server is up and answered: a client error, not a health problem.
                    self.breaker.record_success()
                    hint = (f"; check the key in ${self.oc.api_key_env}"
                            if resp.status in (401, 403) else "")
                    raise AnalysisError(f"{self.oc.base_url} answered {last}{hint}")
            attempt += 1
            if attempt < attempts:
                self._count("retries")
                delay = min(self.oc.max_backoff, self.oc.backoff * 2 ** (attempt - 1))
                self._sleep(delay)
        self.breaker.record_failure()
        raise BackendUnavailableError(f"{self.oc.base_url}: request failed after {attempts} "
                                      f"attempt(s): {last}")

    def _http_or_none(self, image_b64: str, width: int, height: int) -> HttpResponse | None:
        self._count("requests")
        try:
            return self._http("POST", "/chat/completions",
                              self.payload(image_b64, width, height, False))
        except TransportError:
            return None

    def _content(self, resp: HttpResponse) -> str:
        data = resp.json()
        try:
            message = data["choices"][0]["message"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ModelOutputError(f"server answer has no choices[0].message: "
                                   f"{resp.body[:120]!r}") from exc
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            refusal = message.get("refusal") if isinstance(message, dict) else None
            raise ModelOutputError("server answer has no text content"
                                   + (f" (refusal: {str(refusal)[:80]})" if refusal else ""))
        return content

    # ---------------------------------------------------------------------------- analysis
    def encode(self, frame: AnonymizedFrame) -> tuple[str, int, int]:
        """JPEG base64 of the (downscaled) anonymized frame, and the size the model sees."""
        img = frame.image
        h, w = img.shape[:2]
        scale = min(1.0, self.config.max_image_side / max(h, w))
        if scale < 1.0:
            img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img),
                               [cv2.IMWRITE_JPEG_QUALITY, self.oc.jpeg_quality])
        if not ok:
            raise AnalysisError("JPEG encoding of the frame failed")
        return base64.b64encode(buf.tobytes()).decode("ascii"), img.shape[1], img.shape[0]

    def _analyze_one(self, frame: AnonymizedFrame) -> AnalysisResult:
        t0 = time.perf_counter()
        b64, width, height = self.encode(frame)
        text = self.complete(b64, width, height)
        fh, fw = frame.image.shape[:2]
        options = ParseOptions(fw, fh, fw / width, fh / height, self.config.default_speed_unit,
                               self.config.max_signs, "vlm")
        parsed = parse_answer(text, options)
        return AnalysisResult(signs=parsed.signs, scene=parsed.scene, backend=self.name,
                              model_id=self.model_id,
                              analysis_ms=(time.perf_counter() - t0) * 1e3)

    def analyze(self, frames: Sequence[AnonymizedFrame]) -> list[AnalysisResult]:
        """One request per frame, in parallel. A transport or server failure fails the batch
        (the engine answers it from OCR); unusable answers raise BatchOutputError naming the
        frames, with the other frames' results."""
        if self._pool is None:
            raise BackendUnavailableError("openai backend used before load()")
        futures = [self._pool.submit(self._analyze_one, f) for f in frames]
        results: list[AnalysisResult | None] = []
        errors: list[str] = []
        failure: AnalysisError | None = None
        for fut in futures:
            try:
                results.append(fut.result())
                errors.append("")
            except ModelOutputError as exc:
                results.append(None)
                errors.append(str(exc))
            except AnalysisError as exc:
                failure = failure or exc
                results.append(None)
                errors.append(str(exc))
        if failure is not None:
            raise failure
        if any(r is None for r in results):
            raise BatchOutputError(results, errors)
        return [r for r in results if r is not None]
