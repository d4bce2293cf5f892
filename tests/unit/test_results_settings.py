"""RESULTS_CONTAINER and the blob endpoint of identity-based storage, read and checked at start; the memory twin of
the results store purges by expiry as the blob store does (tests/integration/test_results_store.py)."""

from __future__ import annotations

import pytest

from shared.asynchronous.results import expiry_of
from shared.asynchronous.results_memory import MemoryResultsStore
from shared.configuration import ConfigurationError
from shared.settings import load_async_settings, load_storage_settings
from tests.support.rigs import UNIT_ENV

IDENTITY = {"AzureWebJobsStorage__credential": "managedidentity"}


@pytest.mark.parametrize(("env", "blob"), [
    ({"AzureWebJobsStorage__accountName": "acct"}, "https://acct.blob.core.windows.net"),
    ({"AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.usgovcloudapi.net/",
      "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.usgovcloudapi.net"},
     "https://acct.blob.core.usgovcloudapi.net"),
    ({"AzureWebJobsStorage__tableServiceUri": "https://tables.contoso.example",
      "AzureWebJobsStorage__queueServiceUri": "https://queues.contoso.example",
      "AzureWebJobsStorage__blobServiceUri": "https://blobs.contoso.example/"}, "https://blobs.contoso.example"),
])
def test_the_blob_endpoint_is_named_or_the_accounts(env: dict[str, str], blob: str) -> None:
    assert load_storage_settings({**env, **IDENTITY}).blob_endpoint == blob


def test_a_custom_table_domain_without_a_blob_endpoint_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="AzureWebJobsStorage__blobServiceUri"):
        load_storage_settings({"AzureWebJobsStorage__tableServiceUri": "https://tables.contoso.example",
                               "AzureWebJobsStorage__queueServiceUri": "https://queues.contoso.example", **IDENTITY})


def test_results_container_defaults_and_is_checked() -> None:
    assert load_async_settings(UNIT_ENV).results_container == "mdegatewayresults"
    for bad in ("Results", "ab", "a--b", "-ab", "a" * 64):
        with pytest.raises(ConfigurationError, match="RESULTS_CONTAINER must be a blob container name"):
            load_async_settings({**UNIT_ENV, "RESULTS_CONTAINER": bad})


def test_memory_results_go_at_their_expiry_earliest_first() -> None:
    store = MemoryResultsStore()
    late, early = store.put("op-b", b"late", 2_000), store.put("op-a", b"early", 1_000)
    assert (expiry_of(early) or 0) >= 1_000 and store.get(late) == b"late"
    assert store.purge_expired(1_500) == 1 and set(store.blobs) == {late}
    assert store.purge_expired(3_000, limit=0) == 0 and store.purge_expired(3_000) == 1 and store.blobs == {}
