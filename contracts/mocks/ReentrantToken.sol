// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice On the first transfer into or out of `target` after arming, calls `target` again with a
/// prepared payload (e.g. the same claim, or a deposit of its own), recording whether the nested call
/// succeeded and what it reverted with. The token approves `target` for its own balance when armed,
/// so a nested deposit with the token as payer would really move funds if it were allowed to run.
contract ReentrantToken is ERC20 {
    address public target;
    bytes public payload;
    bool public attempted;
    bool public reentered;
    bytes public reentryError;

    constructor() ERC20("Reentrant", "RE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function arm(address target_, bytes calldata payload_) external {
        target = target_;
        payload = payload_;
        attempted = false;
        _approve(address(this), target_, type(uint256).max);
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (target != address(0) && (from == target || to == target) && !attempted) {
            attempted = true;
            (reentered, reentryError) = target.call(payload);
        }
    }
}
