"""Lending model clients: one call at a time each, the most recently returned first."""

from __future__ import annotations

import threading

from studychat.chat.model_clients import ModelClients


def made_in_order() -> ModelClients:
    """Clients that are plain numbers, 0, 1, 2... in the order they are made."""
    counter = iter(range(1000))
    return ModelClients(lambda: next(counter))  # type: ignore[arg-type, return-value]


def test_the_most_recently_returned_client_is_lent_first():
    clients = made_in_order()
    with clients.client() as first:
        with clients.client() as second:
            assert (first, second) == (0, 1)
        # `second` is back and `first` still lent: `second` is lent again.
        with clients.client() as again:
            assert again == 1
    # `first` went back last, so it comes first: its connection is the freshest.
    with clients.client() as again:
        assert again == 0
    assert clients.made == 2


def test_calls_at_once_never_share_a_client_and_only_as_many_are_made():
    clients = made_in_order()
    holding, release = threading.Barrier(9), threading.Event()
    lent: list[int] = []

    def call() -> None:
        with clients.client() as client:
            lent.append(client)
            holding.wait(timeout=10)
            release.wait(timeout=10)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    holding.wait(timeout=10)
    assert sorted(lent) == list(range(8))
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    with clients.client() as client:
        assert client in range(8)
    assert clients.made == 8
