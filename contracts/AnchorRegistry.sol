// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title AnchorRegistry
/// @notice Records Merkle batch roots, and content hashes with their manifest, each with the
///         block it landed in. Write-once: nothing is ever overwritten or deleted.
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

    mapping(bytes32 => Anchor) public anchors;
    mapping(bytes32 => Content) public contents;

    event Anchored(bytes32 indexed root, address indexed submitter, uint256 blockNumber);
    event ContentRegistered(bytes32 indexed contentHash, address indexed creator, string manifestUri);

    error AlreadyAnchored(bytes32 root, uint256 blockNumber);
    error AlreadyRegistered(bytes32 contentHash);

    /// @notice Anchors a batch root; reverts with AlreadyAnchored if it was anchored before.
    function anchor(bytes32 root) external {
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
