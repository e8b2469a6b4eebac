"""A local EVM chain (Foundry's anvil) on 127.0.0.1 for local runs and tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx

from anchorline.infra.process import LocalServer
from anchorline.paths import INFRA_DIR

NODE_DIR: Path = INFRA_DIR / "node"
NODE_MODULES: Path = NODE_DIR / "node_modules"
ANVIL_BIN: Path = NODE_MODULES / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
SOLC_PACKAGE: Path = NODE_MODULES / "solc" / "package.json"

# Accounts 0-2 of anvil's default mnemonic "test test test test test test test test test test
# test junk"; public knowledge, funded only on dev chains.
DEV_PRIVATE_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
)
DEV_ADDRESSES: tuple[str, ...] = (
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
)


def ensure_node_tools() -> Path:
    """Install anvil and solc-js into infra/node/node_modules with npm unless already there."""
    if ANVIL_BIN.exists() and SOLC_PACKAGE.exists():
        return NODE_MODULES
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"{ANVIL_BIN} is missing and there is no npm on PATH to install it")
    verb = "ci" if (NODE_DIR / "package-lock.json").exists() else "install"
    command = [npm, verb, "--no-audit", "--no-fund"]
    result = subprocess.run(command, cwd=NODE_DIR, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not ANVIL_BIN.exists():
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise RuntimeError(f"npm {verb} in {NODE_DIR} did not install anvil\n{output}")
    return NODE_MODULES


STATE_INTERVAL_S = 5  # a dump writes the whole chain: often enough, not every block


class AnvilChain(LocalServer):
    """One anvil process: a dev chain that mines on every transaction, or every block_time;
    with a `state_file`, one that keeps its chain across restarts."""

    log_name = "anvil.log"

    def __init__(
        self,
        *,
        state_dir: Path,
        port: int,
        chain_id: int = 31337,
        block_time: float | None = None,
        state_file: Path | None = None,
        state_interval_s: int | None = STATE_INTERVAL_S,
    ) -> None:
        super().__init__(state_dir)
        self.port = port
        self.chain_id = chain_id
        self.block_time = block_time
        self.state_file = state_file
        self.state_interval_s = state_interval_s
        self.name = f"anvil on {self.url}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30.0) -> None:
        """Launch anvil and wait until it answers eth_chainId."""
        super().start(timeout=timeout)

    def _prepare(self) -> None:
        ensure_node_tools()

    def _ports(self) -> list[int]:
        return [self.port]

    def _command(self) -> list[str]:
        command = [str(ANVIL_BIN), "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--chain-id", str(self.chain_id), "--silent"]
        if self.block_time is not None:
            command += ["--block-time", str(self.block_time)]
        if self.state_file is not None:
            # Loaded at start when it exists, dumped on exit and every few seconds (a kill -9
            # loses at most those): blocks, transactions, logs and accounts survive a restart.
            command += ["--state", str(self.state_file.resolve())]
            if self.state_interval_s is not None:
                command += ["--state-interval", str(self.state_interval_s)]
        return command

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        request = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    if client.post(self.url, json=request).json().get("result"):
                        return
                except (httpx.TransportError, ValueError):
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"anvil on {self.url} did not answer eth_chainId\n{self._log_tail()}")
