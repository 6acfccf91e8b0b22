"""Where an environment's Azure resources go and how they are labelled, once for every component
that needs all of it (the account and the storage take the same six things)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi

from ftops.components.network import Network
from ftops.config.naming import Names
from ftops.config.schema import Environment

if TYPE_CHECKING:  # the key is built from a Placement: only its type is needed here
    from ftops.components.encryption import EncryptionKey


@dataclass(frozen=True)
class Placement:
    env: Environment
    names: Names
    resource_group: pulumi.Input[str]
    network: Network | None  # None: a public environment (no private endpoints)
    workspace_id: pulumi.Input[str]  # Log Analytics, for diagnostic settings
    tags: dict[str, str]
    encryption: EncryptionKey | None = None  # None: platform-managed keys
