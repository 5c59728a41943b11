// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PaychanEscrow} from "../../contracts/PaychanEscrow.sol";
import {TestToken} from "../../contracts/mocks/TestToken.sol";
import {FeeOnTransferToken} from "../../contracts/mocks/FeeOnTransferToken.sol";
import {ContractWallet} from "../../contracts/mocks/ContractWallet.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @dev The few cheatcodes these tests use (forge-std is not available offline).
interface Vm {
    function prank(address sender) external;
    function warp(uint256 timestamp) external;
    function deal(address account, uint256 balance) external;
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function addr(uint256 privateKey) external pure returns (address);
}

/// @notice Drives the escrow through random sequences of every state-changing action, with bounded
/// inputs, several payers (one of them a contract wallet that can refuse ETH), payees, an operator,
/// session keys, ETH, a plain ERC-20 and a fee-on-transfer ERC-20. It records every channel it opened
/// and the largest voucher amount it ever signed for each, so the invariants can check the escrow's
/// books against what was authorized.
contract EscrowHandler {
    Vm private constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    struct Tracked {
        PaychanEscrow.ChannelConfig cfg;
        bytes32 id;
        uint256 signerKey;
        uint256 largestSigned;
    }

    PaychanEscrow public immutable escrow;
    ContractWallet public immutable wallet;
    address[3] public assets;
    address[4] public payers;
    uint256[4] private payerKeys;
    address[2] public payees;
    uint256[2] private payeeKeys;
    address public immutable operator;
    uint256[2] private sessionKeys = [uint256(0xD1), 0xD2];

    Tracked[] private tracked;

    constructor(PaychanEscrow escrow_) {
        escrow = escrow_;
        assets = [address(0), address(new TestToken()), address(new FeeOnTransferToken())];
        wallet = new ContractWallet(address(this));
        for (uint256 i; i < 3; ++i) {
            payerKeys[i] = 0xA1 + i;
            payers[i] = vm.addr(payerKeys[i]);
        }
        payers[3] = address(wallet);
        for (uint256 i; i < 2; ++i) {
            payeeKeys[i] = 0xB1 + i;
            payees[i] = vm.addr(payeeKeys[i]);
        }
        operator = vm.addr(0xC1);
        vm.prank(payees[0]);
        escrow.setOperator(operator, true);
    }

    // ------------------------------------------------------------ actions

    function open(uint256 seed, uint256 amount) external {
        uint256 payerIndex = seed % 4;
        bool isWallet = payerIndex == 3;
        // The wallet may refuse signature checks, so its channels always name a session key.
        uint256 signerChoice = isWallet ? 1 + (seed >> 8) % 2 : (seed >> 8) % 3;
        PaychanEscrow.ChannelConfig memory cfg = PaychanEscrow.ChannelConfig({
            payer: payers[payerIndex],
            payee: payees[(seed >> 16) % 2],
            token: assets[(seed >> 24) % 3],
            signer: signerChoice == 0 ? address(0) : vm.addr(sessionKeys[signerChoice - 1]),
            withdrawDelay: uint32((seed >> 32) % 3 days),
            salt: keccak256(abi.encode(seed, tracked.length))
        });
        amount = _bound(amount, 100, 1e24);
        _fund(cfg.payer, cfg.token, amount);
        bytes memory call = abi.encodeCall(PaychanEscrow.open, (cfg, amount));
        _as(cfg.payer, cfg.token == address(0) ? amount : 0, call);
        tracked.push(
            Tracked({
                cfg: cfg,
                id: escrow.channelIdOf(cfg),
                signerKey: signerChoice == 0 ? payerKeys[payerIndex] : sessionKeys[signerChoice - 1],
                largestSigned: 0
            })
        );
    }

    function topUp(uint256 index, uint256 amount) external {
        Tracked storage t = _pick(index);
        amount = _bound(amount, 1, 1e22);
        _fund(t.cfg.payer, t.cfg.token, amount);
        _as(t.cfg.payer, t.cfg.token == address(0) ? amount : 0, abi.encodeCall(PaychanEscrow.topUp, (t.cfg, amount)));
    }

    function claim(uint256 index, uint256 amount, bool viaOperator) external {
        Tracked storage t = _pick(index);
        amount = _bound(amount, 0, 2 * uint256(escrow.getChannel(t.id).deposit) + 1);
        bytes memory signature = _signVoucher(t, amount);
        vm.prank(_claimer(t.cfg.payee, viaOperator));
        escrow.claim(t.cfg, amount, signature);
    }

    /// @dev Batches every tracked channel of one payee and asset; some entries get a voucher signed
    /// by the wrong key, some an old amount.
    function claimBatch(uint256 seed, bool viaOperator) external {
        address payee = payees[seed % 2];
        address token = assets[(seed >> 8) % 3];
        uint256 count;
        for (uint256 i; i < tracked.length; ++i) {
            if (tracked[i].cfg.payee == payee && tracked[i].cfg.token == token) ++count;
        }
        PaychanEscrow.BatchClaim[] memory claims = new PaychanEscrow.BatchClaim[](count);
        uint256 n;
        for (uint256 i; i < tracked.length && n < count; ++i) {
            Tracked storage t = tracked[i];
            if (t.cfg.payee != payee || t.cfg.token != token) continue;
            uint256 entropy = uint256(keccak256(abi.encode(seed, i)));
            uint256 amount = _bound(entropy, 0, 2 * uint256(escrow.getChannel(t.id).deposit) + 1);
            (bytes32 r, bytes32 vs) = _compact(entropy % 5 == 0 ? _forge(t, amount) : _signVoucher(t, amount));
            claims[n++] = PaychanEscrow.BatchClaim({
                payer: t.cfg.payer,
                signer: t.cfg.signer,
                withdrawDelay: t.cfg.withdrawDelay,
                salt: t.cfg.salt,
                cumulativeAmount: amount,
                r: r,
                vs: vs
            });
        }
        vm.prank(_claimer(payee, viaOperator));
        escrow.claimBatch(payee, token, claims);
    }

    /// @dev Only the payee can close; operators are claim-only.
    function close(uint256 index, uint256 amount) external {
        Tracked storage t = _pick(index);
        amount = _bound(amount, 0, 2 * uint256(escrow.getChannel(t.id).deposit) + 1);
        bytes memory signature = _signVoucher(t, amount);
        vm.prank(t.cfg.payee);
        escrow.close(t.cfg, amount, signature);
    }

    function requestWithdrawal(uint256 index) external {
        Tracked storage t = _pick(index);
        _as(t.cfg.payer, 0, abi.encodeCall(PaychanEscrow.requestWithdrawal, (t.cfg)));
    }

    function finalizeWithdrawal(uint256 index) external {
        Tracked storage t = _pick(index);
        _as(t.cfg.payer, 0, abi.encodeCall(PaychanEscrow.finalizeWithdrawal, (t.cfg)));
    }

    function withdrawCredit(uint256 seed) external {
        _as(payers[seed % 4], 0, abi.encodeCall(PaychanEscrow.withdrawCredit, (assets[(seed >> 8) % 3])));
    }

    /// @dev Switches the wallet payer between accepting and refusing ETH refunds.
    function toggleWallet() external {
        wallet.setMode(wallet.mode() == ContractWallet.Mode.Honest ? ContractWallet.Mode.Revert : ContractWallet.Mode.Honest);
    }

    function warp(uint256 seconds_) external {
        vm.warp(block.timestamp + _bound(seconds_, 0, 2 days));
    }

    // ------------------------------------------------------------ views for the invariants

    function channelCount() external view returns (uint256) {
        return tracked.length;
    }

    function channelAt(uint256 i) external view returns (bytes32 id, address token, uint256 largestSigned) {
        Tracked storage t = tracked[i];
        return (t.id, t.cfg.token, t.largestSigned);
    }

    function assetCount() external pure returns (uint256) {
        return 3;
    }

    function payerAt(uint256 i) external view returns (address) {
        return payers[i];
    }

    // ------------------------------------------------------------ internals

    function _pick(uint256 index) private view returns (Tracked storage) {
        require(tracked.length != 0, "no channel yet");
        return tracked[index % tracked.length];
    }

    function _claimer(address payee, bool viaOperator) private view returns (address) {
        return viaOperator && payee == payees[0] ? operator : payee;
    }

    function _signVoucher(Tracked storage t, uint256 amount) private returns (bytes memory) {
        if (amount > t.largestSigned) t.largestSigned = amount;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(t.signerKey, escrow.voucherDigest(t.id, amount));
        return abi.encodePacked(r, s, v);
    }

    function _forge(Tracked storage t, uint256 amount) private view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(0xF0F0, escrow.voucherDigest(t.id, amount));
        return abi.encodePacked(r, s, v);
    }

    /// @dev EIP-2098: the y-parity bit (v - 27) above s.
    function _compact(bytes memory signature) private pure returns (bytes32 r, bytes32 vs) {
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        vs = bytes32(uint256(s) | (uint256(v - 27) << 255));
    }

    function _fund(address who, address token, uint256 amount) private {
        if (token == address(0)) {
            vm.deal(who, who.balance + amount);
        } else {
            TestToken(token).mint(who, amount);
            _as(who, 0, abi.encodeCall(IERC20.approve, (address(escrow), type(uint256).max)), token);
        }
    }

    function _as(address who, uint256 value, bytes memory call) private {
        _as(who, value, call, address(escrow));
    }

    /// @dev Calls `target` as `who`: through the wallet's `execute` for the wallet, by prank for EOAs.
    /// Reverts bubble up so the fuzzer discards the call.
    function _as(address who, uint256 value, bytes memory call, address target) private {
        bool ok;
        bytes memory ret;
        if (who == address(wallet)) {
            (ok, ret) = address(wallet).call(abi.encodeCall(ContractWallet.execute, (target, value, call)));
        } else {
            vm.prank(who);
            (ok, ret) = target.call{value: value}(call);
        }
        if (!ok) {
            assembly {
                revert(add(ret, 0x20), mload(ret))
            }
        }
    }

    function _bound(uint256 x, uint256 min, uint256 max) private pure returns (uint256) {
        return min + x % (max - min + 1);
    }

    receive() external payable {}
}

/// @notice Conservation: whatever sequence of opens, top-ups, claims, batch claims, closes,
/// withdrawals, credit withdrawals and time jumps happens, the escrow holds, in every asset, exactly
/// what its channels still owe (deposit - claimed) plus the refunds it credited; and no channel ever
/// paid more than its deposit or than the largest voucher its signer signed.
contract ConservationInvariantTest {
    PaychanEscrow private escrow;
    EscrowHandler private handler;

    function setUp() public {
        escrow = new PaychanEscrow();
        handler = new EscrowHandler(escrow);
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// hardhat-config: invariant.runs = 1500
    /// hardhat-config: invariant.depth = 30
    function invariant_escrowHoldsExactlyWhatItOwes() public view {
        for (uint256 a; a < handler.assetCount(); ++a) {
            address asset = handler.assets(a);
            uint256 owed;
            for (uint256 i; i < handler.channelCount(); ++i) {
                (bytes32 id, address token,) = handler.channelAt(i);
                if (token != asset) continue;
                PaychanEscrow.Channel memory ch = escrow.getChannel(id);
                owed += ch.deposit - ch.claimed;
            }
            for (uint256 p; p < 4; ++p) {
                owed += escrow.credits(handler.payerAt(p), asset);
            }
            uint256 held = asset == address(0) ? address(escrow).balance : _balanceOf(asset, address(escrow));
            require(held >= owed, "escrow holds less than it owes");
            require(held == owed, "escrow holds funds nobody can withdraw");
        }
    }

    /// hardhat-config: invariant.runs = 1500
    /// hardhat-config: invariant.depth = 30
    function invariant_claimsNeverExceedDepositOrLargestVoucher() public view {
        for (uint256 i; i < handler.channelCount(); ++i) {
            (bytes32 id,, uint256 largestSigned) = handler.channelAt(i);
            PaychanEscrow.Channel memory ch = escrow.getChannel(id);
            require(ch.claimed <= ch.deposit, "claimed more than deposited");
            require(ch.claimed <= largestSigned, "claimed more than any voucher authorized");
        }
    }

    function _balanceOf(address token, address who) private view returns (uint256) {
        return IERC20(token).balanceOf(who);
    }
}
