"""Raw JSON requests through the kubernetes client (its configuration, credentials,
TLS and connection pool), for any resource path. Blocking: call from threads."""

from __future__ import annotations

import json
from collections.abc import Iterator

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

#: (connect, read) seconds for ordinary requests.
TIMEOUT = (5, 30)


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """An ApiClient from a kubeconfig file, or from the pod's service account."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    return client.ApiClient(configuration)


class APIError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class RawClient:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def _call(self, method: str, path: str, query: dict, body: object, content_type: str, timeout):
        _, url, headers, body, _ = self.api.param_serialize(
            method,
            path,
            query_params=list(query.items()),
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        return self.api.call_api(
            method, url, header_params=headers, body=body, _request_timeout=timeout
        )

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        query: dict | None = None,
        content_type: str = "application/json",
    ) -> dict:
        """One request; the decoded answer, or APIError with the status code."""
        try:
            response = self._call(method, path, query or {}, body, content_type, TIMEOUT)
        except ApiException as exc:
            raise APIError(exc.status, exc.reason) from exc
        data = response.read()
        if response.status >= 400:
            raise APIError(response.status, _reason(data) or response.reason)
        return json.loads(data or b"{}")

    def watch(self, path: str, resource_version: str, timeout: int) -> Iterator[dict]:
        """The events of a watch from ``resource_version``; ends when the server ends
        the stream (after about ``timeout`` seconds)."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout),
        }
        try:
            response = self._call("GET", path, query, None, "application/json", (5, timeout + 30))
        except ApiException as exc:
            raise APIError(exc.status, exc.reason) from exc
        if response.status >= 400:
            raise APIError(response.status, _reason(response.read()) or response.reason)
        try:
            for line in iter_resp_lines(response.response):
                if line:
                    yield json.loads(line)
        finally:
            response.response.release_conn()


def _reason(body) -> str:
    try:
        return json.loads(body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        return ""
