// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title AnchorRegistry
/// @notice Records Merkle batch roots, and content hashes with their manifest, each with the
///         block it landed in. Write-once: nothing is ever overwritten or deleted. Only the
///         installation's writers may anchor roots, so that every root here is its own (and
///         nobody can anchor a root first to spoil the installation's anchor of it).
contract AnchorRegistry {
    /// @dev Packed into one storage slot (8 + 20 bytes).
    struct Anchor {
        uint64 blockNumber;
        address submitter;
    }

    /// @dev creator and registeredAt (a block number) share one slot.
    struct Content {
        address creator;
        uint64 registeredAt;
        string manifestUri;
    }

    /// @notice The deployer: the one who may allow and disallow writers.
    address public immutable owner;
    mapping(address => bool) public writers;
    mapping(bytes32 => Anchor) public anchors;
    mapping(bytes32 => Content) public contents;

    event Anchored(bytes32 indexed root, address indexed submitter, uint256 blockNumber);
    event ContentRegistered(bytes32 indexed contentHash, address indexed creator, string manifestUri);
    event WriterSet(address indexed writer, bool allowed);

    error AlreadyAnchored(bytes32 root, uint256 blockNumber);
    error AlreadyRegistered(bytes32 contentHash);
    error NotOwner(address sender);
    error NotWriter(address sender);

    constructor(address[] memory initialWriters) {
        owner = msg.sender;
        for (uint256 i = 0; i < initialWriters.length; i++) {
            writers[initialWriters[i]] = true;
            emit WriterSet(initialWriters[i], true);
        }
    }

    /// @notice Allows or disallows an address to anchor roots; the owner alone may.
    function setWriter(address writer, bool allowed) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        writers[writer] = allowed;
        emit WriterSet(writer, allowed);
    }

    /// @notice Anchors a batch root; reverts with NotWriter for anyone but a writer, and with
    ///         AlreadyAnchored if the root was anchored before.
    function anchor(bytes32 root) external {
        if (!writers[msg.sender]) revert NotWriter(msg.sender);
        // A transaction is never in block 0, so 0 safely means "never anchored".
        uint64 existing = anchors[root].blockNumber;
        if (existing != 0) revert AlreadyAnchored(root, existing);
        anchors[root] = Anchor(uint64(block.number), msg.sender);
        emit Anchored(root, msg.sender, block.number);
    }

    /// @notice The block in which root was anchored, or 0 if it never was.
    function anchoredAt(bytes32 root) external view returns (uint256) {
        return anchors[root].blockNumber;
    }

    /// @notice Registers a content hash with the URI of its signed manifest, once.
    function registerContent(bytes32 contentHash, string calldata manifestUri) external {
        Content storage content = contents[contentHash];
        if (content.creator != address(0)) revert AlreadyRegistered(contentHash);
        content.creator = msg.sender;
        content.registeredAt = uint64(block.number);
        content.manifestUri = manifestUri;
        emit ContentRegistered(contentHash, msg.sender, manifestUri);
    }
}
