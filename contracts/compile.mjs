// Compiles AnchorRegistry.sol with the pinned solc-js into AnchorRegistry.json.
//   node contracts/compile.mjs           write the artifact
//   node contracts/compile.mjs --check   exit 1 if the committed artifact is stale
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const CONTRACT = "AnchorRegistry";
const here = dirname(fileURLToPath(import.meta.url));
const sourcePath = join(here, `${CONTRACT}.sol`);
const artifactPath = join(here, `${CONTRACT}.json`);
// solc-js lives with the other node tools, not in a package.json of its own here.
const require = createRequire(join(here, "..", "infra", "node", "package.json"));
const solc = require("solc");

function compile(source) {
  const input = {
    language: "Solidity",
    sources: { [`${CONTRACT}.sol`]: { content: source } },
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
      // No metadata hash in the bytecode, so the artifact depends on the source alone.
      metadata: { bytecodeHash: "none" },
      outputSelection: {
        [`${CONTRACT}.sol`]: {
          [CONTRACT]: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"],
        },
      },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  if (errors.length > 0) {
    throw new Error(errors.map((e) => e.formattedMessage).join("\n"));
  }
  return output.contracts[`${CONTRACT}.sol`][CONTRACT];
}

function artifactText() {
  const source = readFileSync(sourcePath);
  const contract = compile(source.toString("utf8"));
  const artifact = {
    contractName: CONTRACT,
    compiler: solc.version(),
    sourceSha256: createHash("sha256").update(source).digest("hex"),
    abi: contract.abi,
    bytecode: `0x${contract.evm.bytecode.object}`,
    deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
  };
  return `${JSON.stringify(artifact, null, 2)}\n`;
}

function staleFields(committedText, freshText) {
  let committed;
  try {
    committed = JSON.parse(committedText);
  } catch {
    return ["(not valid JSON)"];
  }
  const fresh = JSON.parse(freshText);
  const keys = new Set([...Object.keys(committed), ...Object.keys(fresh)]);
  const differing = [...keys].filter(
    (key) => JSON.stringify(committed[key]) !== JSON.stringify(fresh[key]),
  );
  return differing.length > 0 ? differing : ["(formatting)"];
}

function main(args) {
  const fresh = artifactText();
  if (!args.includes("--check")) {
    writeFileSync(artifactPath, fresh);
    console.log(`wrote ${artifactPath}`);
    return 0;
  }
  if (!existsSync(artifactPath)) {
    console.error(`${artifactPath} is missing: run node contracts/compile.mjs`);
    return 1;
  }
  const committed = readFileSync(artifactPath, "utf8");
  if (committed === fresh) {
    return 0;
  }
  const fields = staleFields(committed, fresh).join(", ");
  console.error(`${artifactPath} is stale (${fields}): run node contracts/compile.mjs`);
  return 1;
}

process.exitCode = main(process.argv.slice(2));
