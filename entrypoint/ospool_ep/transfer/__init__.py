"""OSDF/Pelican transfers: the HTCondor file-transfer plugin for ``osdf``, ``pelican`` and
``stash`` URLs, and its self-test.

Data flows one way: the starter's request file -> :mod:`.protocol` (parsed requests) ->
:mod:`.urls` (validated object addresses) -> :mod:`.tokens` (the job's credential, if it
brought one) -> :mod:`.engine` (pelicanfs does the transfer, bounded) -> result ads.
:mod:`.plugin` is the command HTCondor runs; :mod:`.selftest` is what the pilot runs to
decide whether to offer the methods at all.
"""
