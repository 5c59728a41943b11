// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";

/// @notice A minimal smart-contract wallet: executes its owner's calls and validates signatures by
/// its owner (ERC-1271). Its owner can be replaced, as a Safe's owners routinely are. `mode` makes
/// it hostile: revert or burn all gas on `isValidSignature` and on receiving ETH, answer both with a
/// huge return payload, or call signatures valid only when simulated (`tx.gasprice == 0`, which is
/// what `eth_call` runs with), never inside a mined transaction.
contract ContractWallet is IERC1271 {
    enum Mode {
        Honest,
        Revert,
        BurnGas,
        ReturnBomb,
        ValidOnlyInCalls
    }

    /// @notice Bytes a `ReturnBomb` wallet answers with: about what 100k gas of memory can hold.
    uint256 public constant BOMB_SIZE = 180_000;

    address public owner;
    Mode public mode;

    constructor(address owner_) {
        owner = owner_;
    }

    function setMode(Mode mode_) external {
        require(msg.sender == owner, "owner");
        mode = mode_;
    }

    function setOwner(address owner_) external {
        require(msg.sender == owner, "owner");
        owner = owner_;
    }

    function execute(address target, uint256 value, bytes calldata data) external returns (bytes memory) {
        require(msg.sender == owner, "owner");
        (bool ok, bytes memory ret) = target.call{value: value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        _misbehave();
        if (mode == Mode.ValidOnlyInCalls && tx.gasprice != 0) return bytes4(0);
        return ECDSA.recoverCalldata(hash, signature) == owner ? IERC1271.isValidSignature.selector : bytes4(0);
    }

    receive() external payable {
        _misbehave();
    }

    function _misbehave() private view {
        if (mode == Mode.Revert) revert("hostile wallet");
        if (mode == Mode.BurnGas) {
            while (true) {}
        }
        if (mode == Mode.ReturnBomb) {
            assembly {
                return(0, BOMB_SIZE)
            }
        }
    }
}
