"""What every model type of the provider shares: the endpoint, the HTTP client, the error mapping.

Behaviour as `crates/dify-plugin/examples/openai_compat.rs`: every call goes to
`{endpoint_url}/...` (default https://api.openai.com/v1, trailing '/' trimmed) with
`Authorization: Bearer {api_key}`; a non-2xx answer becomes the `Invoke*Error` its status stands
for, with the API's own `error.message` as the description.
"""

from collections.abc import Mapping
from typing import Any

import requests

from dify_plugin.errors.model import (
    InvokeAuthorizationError,
    InvokeBadRequestError,
    InvokeConnectionError,
    InvokeError,
    InvokeRateLimitError,
    InvokeServerUnavailableError,
)

DEFAULT_ENDPOINT = "https://api.openai.com/v1"
# connect, read (seconds), as the Rust example's client (10 s to connect, 300 s in all).
TIMEOUT = (10, 300)

# One connection pool per process, as the Rust example has one HTTP client.
_http = requests.Session()


def endpoint(credentials: Mapping[str, Any]) -> str:
    return str(credentials.get("endpoint_url") or DEFAULT_ENDPOINT).rstrip("/")


def _headers(credentials: Mapping[str, Any]) -> dict[str, str]:
    key = credentials.get("api_key")
    return {"Authorization": f"Bearer {key}"} if key else {}


def error_for_status(status: int, message: str) -> InvokeError:
    if status in (401, 403):
        return InvokeAuthorizationError(message)
    if status == 429:
        return InvokeRateLimitError(message)
    if 500 <= status <= 599:
        return InvokeServerUnavailableError(message)
    return InvokeBadRequestError(message)


def send(
    method: str,
    credentials: Mapping[str, Any],
    path: str,
    *,
    json_body: Any = None,
    files: Any = None,
    data: Any = None,
    stream: bool = False,
) -> requests.Response:
    """Sends one call; a non-2xx answer raises the `Invoke*Error` its status stands for."""
    try:
        response = _http.request(
            method,
            f"{endpoint(credentials)}/{path}",
            headers=_headers(credentials),
            json=json_body,
            files=files,
            data=data,
            stream=stream,
            timeout=TIMEOUT,
        )
    except requests.Timeout as e:
        # Without the URL: a query could carry a key.
        raise InvokeConnectionError(f"the model API timed out: {type(e).__name__}") from e
    except requests.RequestException as e:
        raise InvokeConnectionError(f"the model API could not connect: {type(e).__name__}") from e
    if 200 <= response.status_code < 300:
        return response
    try:
        message = response.json()["error"]["message"][:300]
    except Exception:
        message = f"the model API answered HTTP {response.status_code}"
    finally:
        response.close()
    raise error_for_status(response.status_code, message)


def post_json(credentials: Mapping[str, Any], path: str, body: Any) -> dict:
    response = send("POST", credentials, path, json_body=body)
    try:
        return response.json()
    except ValueError as e:
        raise InvokeBadRequestError(f"the model API's {path} answer is not JSON") from e


class CommonOpenAICompat:
    """The error mapping every model class of the provider shares."""

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {
            InvokeConnectionError: [requests.ConnectionError, requests.Timeout],
            InvokeBadRequestError: [requests.RequestException, ValueError, KeyError],
        }

    def _transform_invoke_error(self, error: Exception) -> InvokeError:
        # Our own Invoke*Error already says what happened: keep it (the SDK would prefix its
        # description with "[models] ..." and the class's generic text).
        if isinstance(error, InvokeError):
            return error
        return super()._transform_invoke_error(error)  # type: ignore[misc]
