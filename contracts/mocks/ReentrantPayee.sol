// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice A payee contract that, when paid in ETH, calls the escrow again with a prepared payload,
/// recording whether the nested call succeeded and what it reverted with.
contract ReentrantPayee {
    address public target;
    bytes public payload;
    bool public attempted;
    bool public reentered;
    bytes public reentryError;

    function arm(address target_, bytes calldata payload_) external {
        target = target_;
        payload = payload_;
    }

    /// @notice Forwards a call to the escrow as this payee (e.g. the first claim).
    function execute(bytes calldata data) external returns (bytes memory) {
        (bool ok, bytes memory ret) = target.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret;
    }

    receive() external payable {
        if (!attempted) {
            attempted = true;
            (reentered, reentryError) = target.call(payload);
        }
    }
}
