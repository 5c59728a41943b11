// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @title PaychanEscrow
/// @notice One contract holding every paychan payment channel. A channel is a one-way payment
/// relationship payer -> payee in one asset (native ETH as `address(0)`, or any ERC-20). The payer
/// deposits once; the payee claims what the payer's EIP-712 vouchers authorize (each voucher carries
/// the channel's cumulative total); the payer can always take the unspent rest back after the
/// channel's withdrawal delay.
/// @dev A channel's configuration is never stored: it travels in calldata and is hashed (as an EIP-712
/// `Channel` struct under this contract's domain, so bound to chain id and address) into the channel id.
/// Each channel's state is a single storage slot, which is what makes a batch claim cheap.
contract PaychanEscrow is EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice The immutable terms of a channel. Its hash is the channel id.
    /// @param payer Who deposits, and who receives the unspent rest.
    /// @param payee Who claims vouchers.
    /// @param token The asset: `address(0)` for native ETH, else an ERC-20.
    /// @param signer The key that signs vouchers (e.g. a browser session key), or `address(0)` for the
    /// payer itself. A signer with code may also validate vouchers through ERC-1271, but that answer is
    /// taken when the claim is mined and the wallet can change it, so gateways accept only ECDSA
    /// vouchers (docs/PROTOCOL.md, section 6.2).
    /// @param withdrawDelay Seconds between the payer's withdrawal request and its finalization,
    /// during which the payee can still claim. Not bounded here: the window a payee needs depends on
    /// how often it settles, so a payee refuses channels below its own minimum before it accepts any
    /// voucher (0 lets the payer take everything back in the block after it asks).
    /// @param salt Lets the same parties hold several channels.
    struct ChannelConfig {
        address payer;
        address payee;
        address token;
        address signer;
        uint32 withdrawDelay;
        bytes32 salt;
    }

    /// @notice A channel's mutable state, packed in one slot.
    /// @param deposit Everything ever deposited, in base units.
    /// @param claimed Everything paid to the payee so far (cumulative).
    /// @param withdrawReadyAt 0 while open; the time the payer may finalize once a withdrawal was
    /// requested; `CLOSED` once the channel is settled for good.
    struct Channel {
        uint96 deposit;
        uint96 claimed;
        uint64 withdrawReadyAt;
    }

    /// @notice One entry of a batch claim; payee and token are shared by the whole batch. The voucher's
    /// signature is in EIP-2098 compact form: `r`, and `vs` = the y-parity bit (v - 27) above the 255
    /// bits of a low `s`.
    /// @dev `_batchChannelId` reads the first four fields straight from calldata; test/contracts/abi.test.ts
    /// fails if this layout changes.
    struct BatchClaim {
        address payer;
        address signer;
        uint32 withdrawDelay;
        bytes32 salt;
        uint256 cumulativeAmount;
        bytes32 r;
        bytes32 vs;
    }

    /// @notice Why a batch entry paid nothing (a batch never reverts because of one channel).
    enum SkipReason {
        None,
        UnknownChannel,
        ClaimWindowClosed,
        NothingNew,
        InvalidSignature
    }

    bytes32 public constant CHANNEL_TYPEHASH = keccak256(
        "Channel(address payer,address payee,address token,address signer,uint32 withdrawDelay,bytes32 salt)"
    );
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint256 cumulativeAmount)");
    uint64 public constant CLOSED = type(uint64).max;
    /// @notice Gas given to an ERC-1271 wallet's `isValidSignature`, so a hostile wallet cannot
    /// exhaust a batch claim's gas.
    uint256 public constant ERC1271_GAS_LIMIT = 100_000;
    /// @notice Gas given to the payer's ETH refund on a payee-initiated close; if the payer cannot
    /// receive it within that, the refund is credited for `withdrawCredit` instead.
    uint256 public constant REFUND_GAS_LIMIT = 100_000;

    mapping(bytes32 channelId => Channel) private _channels;
    mapping(address payee => mapping(address operator => bool)) public isOperator;
    mapping(address account => mapping(address token => uint256)) public credits;

    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        address token,
        address signer,
        uint32 withdrawDelay,
        bytes32 salt,
        uint256 deposit
    );
    event Deposited(bytes32 indexed channelId, uint256 amount, uint256 newDeposit);
    event Claimed(bytes32 indexed channelId, address indexed payee, uint256 amount, uint256 totalClaimed);
    event ClaimSkipped(bytes32 indexed channelId, SkipReason reason);
    event WithdrawalRequested(bytes32 indexed channelId, uint64 readyAt);
    event ChannelClosed(bytes32 indexed channelId, uint256 totalClaimed, uint256 refunded);
    event RefundCredited(address indexed account, address indexed token, uint256 amount);
    event CreditWithdrawn(address indexed account, address indexed token, uint256 amount);
    event OperatorSet(address indexed payee, address indexed operator, bool approved);

    error ZeroAmount();
    error ZeroAddress();
    error AmountOverflow(uint256 max);
    error WrongValue(uint256 expected, uint256 sent);
    error ChannelExists(bytes32 channelId);
    error UnknownChannel(bytes32 channelId);
    error ChannelIsClosed(bytes32 channelId);
    error WithdrawalPending(bytes32 channelId, uint64 readyAt);
    error WithdrawalNotRequested(bytes32 channelId);
    error WithdrawalNotReady(bytes32 channelId, uint64 readyAt);
    error ClaimWindowClosed(bytes32 channelId, uint64 readyAt);
    error NotPayer(address caller);
    error NotPayeeOrOperator(address caller);
    error NotPayee(address caller);
    error InvalidSignature(bytes32 channelId);
    error NothingToClaim(bytes32 channelId);
    error NoCredit();
    error EthTransferFailed(address to);

    constructor() EIP712("paychan", "1") {}

    // ---------------------------------------------------------------- payer

    /// @notice Opens a channel and deposits `amount` into it. ETH channels send exactly `amount` as
    /// value; ERC-20 channels need an allowance and are credited what the contract actually received.
    /// @return channelId The id of the new channel.
    function open(ChannelConfig calldata cfg, uint256 amount) external payable nonReentrant returns (bytes32 channelId) {
        channelId = _open(cfg);
        _deposit(channelId, cfg, amount, 0);
    }

    /// @notice Opens an ERC-20 channel in one transaction with an EIP-2612 permit for this contract.
    /// @dev A permit already consumed (e.g. front-run) is tolerated as long as the allowance suffices.
    function openWithPermit(
        ChannelConfig calldata cfg,
        uint256 amount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant returns (bytes32 channelId) {
        if (cfg.token == address(0)) revert ZeroAddress();
        channelId = _open(cfg);
        try IERC20Permit(cfg.token).permit(cfg.payer, address(this), amount, deadline, v, r, s) {} catch {}
        _deposit(channelId, cfg, amount, 0);
    }

    /// @notice Adds `amount` to an open channel. Not allowed once a withdrawal was requested: the
    /// payer would only get it back, and a third party could not use it to disturb the delay.
    function topUp(ChannelConfig calldata cfg, uint256 amount) external payable nonReentrant {
        bytes32 channelId = channelIdOf(cfg);
        if (msg.sender != cfg.payer) revert NotPayer(msg.sender);
        Channel memory ch = _channels[channelId];
        if (ch.deposit == 0 && ch.withdrawReadyAt == 0) revert UnknownChannel(channelId);
        if (ch.withdrawReadyAt == CLOSED) revert ChannelIsClosed(channelId);
        if (ch.withdrawReadyAt != 0) revert WithdrawalPending(channelId, ch.withdrawReadyAt);
        _deposit(channelId, cfg, amount, ch.deposit);
    }

    /// @notice Starts the payer's escape hatch: after `withdrawDelay` seconds the payer may take back
    /// everything not claimed. The payee can claim until then. Calling it again reverts rather than
    /// moving the deadline.
    function requestWithdrawal(ChannelConfig calldata cfg) external nonReentrant {
        bytes32 channelId = channelIdOf(cfg);
        if (msg.sender != cfg.payer) revert NotPayer(msg.sender);
        Channel storage ch = _channels[channelId];
        uint64 readyAt = ch.withdrawReadyAt;
        if (ch.deposit == 0 && readyAt == 0) revert UnknownChannel(channelId);
        if (readyAt == CLOSED) revert ChannelIsClosed(channelId);
        if (readyAt != 0) revert WithdrawalPending(channelId, readyAt);
        readyAt = uint64(block.timestamp) + cfg.withdrawDelay;
        ch.withdrawReadyAt = readyAt;
        emit WithdrawalRequested(channelId, readyAt);
    }

    /// @notice Ends a requested withdrawal once its delay has passed: the payer receives deposit minus
    /// claimed and the channel closes for good.
    function finalizeWithdrawal(ChannelConfig calldata cfg) external nonReentrant {
        bytes32 channelId = channelIdOf(cfg);
        if (msg.sender != cfg.payer) revert NotPayer(msg.sender);
        Channel memory ch = _channels[channelId];
        if (ch.withdrawReadyAt == CLOSED) revert ChannelIsClosed(channelId);
        if (ch.withdrawReadyAt == 0) revert WithdrawalNotRequested(channelId);
        if (block.timestamp < ch.withdrawReadyAt) revert WithdrawalNotReady(channelId, ch.withdrawReadyAt);
        uint256 refund = ch.deposit - ch.claimed;
        _channels[channelId] = Channel({deposit: ch.claimed, claimed: ch.claimed, withdrawReadyAt: CLOSED});
        emit ChannelClosed(channelId, ch.claimed, refund);
        if (refund != 0) _send(cfg.token, cfg.payer, refund);
    }

    /// @notice Withdraws refunds that could not be pushed to the caller (see `REFUND_GAS_LIMIT`).
    function withdrawCredit(address token) external nonReentrant {
        uint256 amount = credits[msg.sender][token];
        if (amount == 0) revert NoCredit();
        credits[msg.sender][token] = 0;
        emit CreditWithdrawn(msg.sender, token, amount);
        _send(token, msg.sender, amount);
    }

    // ---------------------------------------------------------------- payee

    /// @notice Lets `operator` (e.g. a settlement hot wallet) claim the caller's channels with `claim`
    /// and `claimBatch`. Funds always go to the payee, never to the operator. An operator cannot
    /// `close`: a close ends the channel and refunds the rest, so a leaked hot key could otherwise close
    /// without the payee's latest voucher and send its unclaimed earnings back to the payer.
    function setOperator(address operator, bool approved) external {
        isOperator[msg.sender][operator] = approved;
        emit OperatorSet(msg.sender, operator, approved);
    }

    /// @notice Claims a voucher without closing the channel: the payee receives the difference between
    /// the voucher's cumulative amount (capped at the deposit) and what was already claimed.
    /// @return paid What this call transferred to the payee.
    function claim(ChannelConfig calldata cfg, uint256 cumulativeAmount, bytes calldata signature)
        external
        nonReentrant
        returns (uint256 paid)
    {
        _checkPayeeOrOperator(cfg.payee);
        bytes32 channelId = channelIdOf(cfg);
        paid = _claim(channelId, cfg, cumulativeAmount, signature);
        if (paid == 0) revert NothingToClaim(channelId);
        _send(cfg.token, cfg.payee, paid);
    }

    /// @notice Claims many channels of one payee and one asset in a single transfer. An entry that
    /// cannot pay (unknown, past its deadline, not newer, bad signature) is skipped with a
    /// `ClaimSkipped` event so one hostile channel cannot block the others.
    /// @return total What this call transferred to the payee.
    function claimBatch(address payee, address token, BatchClaim[] calldata claims)
        external
        nonReentrant
        returns (uint256 total)
    {
        _checkPayeeOrOperator(payee);
        bytes32 separator = _domainSeparatorV4();
        uint256 channelWords = _batchChannelWords(payee, token);
        for (uint256 i; i < claims.length; ++i) {
            // Cannot overflow: each payment is below 2^96 and a batch has far fewer than 2^160 entries.
            unchecked {
                total += _claimBatchEntry(claims[i], payee, channelWords, separator);
            }
        }
        if (total != 0) _send(token, payee, total);
    }

    /// @notice Cooperative close: claims the final voucher (if it is newer than what was claimed) and
    /// returns the unspent rest to the payer at once. Only the payee itself may close, never an operator.
    function close(ChannelConfig calldata cfg, uint256 cumulativeAmount, bytes calldata signature)
        external
        nonReentrant
    {
        if (msg.sender != cfg.payee) revert NotPayee(msg.sender);
        bytes32 channelId = channelIdOf(cfg);
        Channel memory ch = _channels[channelId];
        if (ch.withdrawReadyAt == CLOSED) revert ChannelIsClosed(channelId);
        uint256 paid = cumulativeAmount > ch.claimed ? _claim(channelId, cfg, cumulativeAmount, signature) : 0;
        if (paid == 0 && ch.deposit == 0) revert UnknownChannel(channelId);
        uint96 claimed = ch.claimed + uint96(paid);
        uint256 refund = ch.deposit - claimed;
        _channels[channelId] = Channel({deposit: claimed, claimed: claimed, withdrawReadyAt: CLOSED});
        emit ChannelClosed(channelId, claimed, refund);
        if (paid != 0) _send(cfg.token, cfg.payee, paid);
        if (refund != 0) _refund(cfg.token, cfg.payer, refund);
    }

    // ---------------------------------------------------------------- views

    /// @notice The channel id of a configuration on this chain and this deployment.
    function channelIdOf(ChannelConfig calldata cfg) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(CHANNEL_TYPEHASH, cfg)));
    }

    /// @notice A channel's state; all zero for a channel never opened.
    function getChannel(bytes32 channelId) external view returns (Channel memory) {
        return _channels[channelId];
    }

    /// @notice The EIP-712 digest a voucher's signer signs.
    function voucherDigest(bytes32 channelId, uint256 cumulativeAmount) public view returns (bytes32) {
        return _voucherDigest(_domainSeparatorV4(), channelId, cumulativeAmount);
    }

    /// @notice Whether `signature` is a valid voucher for the channel described by `cfg`.
    function isValidVoucher(ChannelConfig calldata cfg, uint256 cumulativeAmount, bytes calldata signature)
        external
        view
        returns (bool)
    {
        address signer = cfg.signer == address(0) ? cfg.payer : cfg.signer;
        return _isValidSignature(signer, voucherDigest(channelIdOf(cfg), cumulativeAmount), signature);
    }

    /// @notice This contract's EIP-712 domain separator.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ---------------------------------------------------------------- internals

    /// @dev Allocates the `Channel` struct encoding that a batch hashes once per entry, with the words
    /// the whole batch shares (type hash, payee, token) written once.
    function _batchChannelWords(address payee, address token) private pure returns (uint256 words) {
        bytes32 typeHash = CHANNEL_TYPEHASH;
        assembly ("memory-safe") {
            words := mload(0x40)
            mstore(0x40, add(words, 0xe0))
            mstore(words, typeHash)
            mstore(add(words, 0x40), payee)
            mstore(add(words, 0x60), token)
        }
    }

    /// @dev One entry of a batch: records and returns what its voucher adds, or skips it with the reason.
    function _claimBatchEntry(BatchClaim calldata c, address payee, uint256 channelWords, bytes32 separator)
        private
        returns (uint256 paid)
    {
        (bytes32 channelId, address signer) = _batchChannelId(c, channelWords, separator);
        Channel storage ch = _channels[channelId];
        (SkipReason skip, uint96 claimed, uint96 newClaimed) = _claimable(ch, c.cumulativeAmount);
        if (skip == SkipReason.None) {
            if (!_isValidSignature(signer, _voucherDigest(separator, channelId, c.cumulativeAmount), c.r, c.vs)) {
                skip = SkipReason.InvalidSignature;
            }
        }
        if (skip != SkipReason.None) {
            emit ClaimSkipped(channelId, skip);
            return 0;
        }
        paid = _recordClaim(ch, channelId, claimed, newClaimed, payee);
    }

    /// @dev A batch entry's channel id (its payer, signer, withdrawDelay and salt copied from calldata into
    /// `words` and hashed) and the address its voucher must be signed by. The words are not ABI-validated
    /// on the way: an address or delay word with dirty high bits hashes to an id no `open` can have
    /// produced (`open` validates its config), so the entry is skipped as an unknown channel before its
    /// signer is ever used.
    function _batchChannelId(BatchClaim calldata c, uint256 words, bytes32 separator)
        private
        pure
        returns (bytes32 channelId, address signer)
    {
        assembly ("memory-safe") {
            calldatacopy(add(words, 0x20), c, 0x20) // payer
            calldatacopy(add(words, 0x80), add(c, 0x20), 0x60) // signer, withdrawDelay, salt
            let ptr := mload(0x40)
            mstore(ptr, hex"1901")
            mstore(add(ptr, 0x02), separator)
            mstore(add(ptr, 0x22), keccak256(words, 0xe0))
            channelId := keccak256(ptr, 0x42)
            let addressMask := sub(shl(160, 1), 1)
            signer := and(calldataload(add(c, 0x20)), addressMask)
            if iszero(signer) { signer := and(calldataload(c), addressMask) }
        }
    }

    /// @dev keccak256(0x1901 ‖ separator ‖ keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount))),
    /// in scratch memory past the free memory pointer: it runs for every claimed channel, and a batch
    /// would otherwise grow memory.
    function _voucherDigest(bytes32 separator, bytes32 channelId, uint256 cumulativeAmount)
        private
        pure
        returns (bytes32 digest)
    {
        bytes32 typeHash = VOUCHER_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typeHash)
            mstore(add(ptr, 0x20), channelId)
            mstore(add(ptr, 0x40), cumulativeAmount)
            mstore(add(ptr, 0x22), keccak256(ptr, 0x60))
            mstore(ptr, hex"1901")
            mstore(add(ptr, 0x02), separator)
            digest := keccak256(ptr, 0x42)
        }
    }

    function _open(ChannelConfig calldata cfg) private view returns (bytes32 channelId) {
        if (msg.sender != cfg.payer) revert NotPayer(msg.sender);
        if (cfg.payee == address(0)) revert ZeroAddress();
        channelId = channelIdOf(cfg);
        Channel memory ch = _channels[channelId];
        if (ch.deposit != 0 || ch.withdrawReadyAt != 0) revert ChannelExists(channelId);
    }

    /// @dev Pulls `amount` from the payer and credits what actually arrived (fee-on-transfer safe).
    function _deposit(bytes32 channelId, ChannelConfig calldata cfg, uint256 amount, uint96 current) private {
        if (amount == 0) revert ZeroAmount();
        uint256 received;
        if (cfg.token == address(0)) {
            if (msg.value != amount) revert WrongValue(amount, msg.value);
            received = amount;
        } else {
            if (msg.value != 0) revert WrongValue(0, msg.value);
            IERC20 token = IERC20(cfg.token);
            uint256 before = token.balanceOf(address(this));
            token.safeTransferFrom(cfg.payer, address(this), amount);
            received = token.balanceOf(address(this)) - before;
            if (received == 0) revert ZeroAmount();
        }
        uint256 newDeposit = uint256(current) + received;
        if (newDeposit > type(uint96).max) revert AmountOverflow(type(uint96).max);
        _channels[channelId].deposit = uint96(newDeposit);
        if (current == 0) {
            emit ChannelOpened(
                channelId, cfg.payer, cfg.payee, cfg.token, cfg.signer, cfg.withdrawDelay, cfg.salt, received
            );
        } else {
            emit Deposited(channelId, received, newDeposit);
        }
    }

    /// @dev Verifies a voucher and records the claim; returns what the payee is owed by it, 0 when the
    /// voucher is not newer than what was claimed. Reverts on every other reason a claim cannot pay.
    function _claim(bytes32 channelId, ChannelConfig calldata cfg, uint256 cumulativeAmount, bytes calldata signature)
        private
        returns (uint256 paid)
    {
        Channel storage ch = _channels[channelId];
        (SkipReason skip, uint96 claimed, uint96 newClaimed) = _claimable(ch, cumulativeAmount);
        if (skip == SkipReason.NothingNew) return 0;
        if (skip == SkipReason.UnknownChannel) revert UnknownChannel(channelId);
        if (skip == SkipReason.ClaimWindowClosed) {
            uint64 readyAt = ch.withdrawReadyAt;
            if (readyAt == CLOSED) revert ChannelIsClosed(channelId);
            revert ClaimWindowClosed(channelId, readyAt);
        }
        address signer = cfg.signer == address(0) ? cfg.payer : cfg.signer;
        if (!_isValidSignature(signer, voucherDigest(channelId, cumulativeAmount), signature)) {
            revert InvalidSignature(channelId);
        }
        paid = _recordClaim(ch, channelId, claimed, newClaimed, cfg.payee);
    }

    /// @dev The one place a voucher's amount is checked against its channel, for single and batch claims
    /// alike: a voucher pays its cumulative amount, capped at the deposit, minus what was already
    /// claimed. Returns why it cannot pay (`None` if it can), what was claimed so far and what the
    /// claimed total becomes. The signature is checked afterwards, by the caller, only for a voucher that
    /// would pay, so a stale entry never calls a wallet.
    function _claimable(Channel storage ch, uint256 cumulativeAmount)
        private
        view
        returns (SkipReason skip, uint96 claimed, uint96 newClaimed)
    {
        (uint96 deposit, uint64 readyAt) = (ch.deposit, ch.withdrawReadyAt);
        claimed = ch.claimed;
        if (deposit == 0 && readyAt == 0) return (SkipReason.UnknownChannel, claimed, claimed);
        if (readyAt == CLOSED || (readyAt != 0 && block.timestamp >= readyAt)) {
            return (SkipReason.ClaimWindowClosed, claimed, claimed);
        }
        newClaimed = cumulativeAmount < deposit ? uint96(cumulativeAmount) : deposit;
        if (newClaimed <= claimed) return (SkipReason.NothingNew, claimed, claimed);
    }

    function _recordClaim(Channel storage ch, bytes32 channelId, uint96 claimed, uint96 newClaimed, address payee)
        private
        returns (uint256 paid)
    {
        ch.claimed = newClaimed;
        unchecked {
            paid = newClaimed - claimed; // newClaimed > claimed, checked by _claimable
        }
        emit Claimed(channelId, payee, paid, newClaimed);
    }

    /// @dev ECDSA first (65-byte signatures only, low-s only: OpenZeppelin's `tryRecoverCalldata`), then
    /// ERC-1271 for contract signers.
    function _isValidSignature(address signer, bytes32 digest, bytes calldata signature) private view returns (bool) {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err == ECDSA.RecoverError.NoError && recovered == signer) return true;
        return _isValidERC1271Signature(signer, digest, signature);
    }

    /// @dev The same for an EIP-2098 compact signature (OpenZeppelin's `tryRecover(hash, r, vs)`, low-s
    /// only); a contract signer is asked about the equivalent 65-byte `r ‖ s ‖ v`.
    function _isValidSignature(address signer, bytes32 digest, bytes32 r, bytes32 vs) private view returns (bool) {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, r, vs);
        if (err == ECDSA.RecoverError.NoError && recovered == signer) return true;
        bytes32 s = vs & bytes32(uint256(type(int256).max));
        uint8 v = uint8(uint256(vs) >> 255) + 27;
        return _isValidERC1271Signature(signer, digest, abi.encodePacked(r, s, v));
    }

    /// @dev ERC-1271 with a gas cap, reading at most 32 bytes of return data.
    function _isValidERC1271Signature(address signer, bytes32 digest, bytes memory signature)
        private
        view
        returns (bool)
    {
        if (signer.code.length == 0) return false;
        bytes memory data = abi.encodeCall(IERC1271.isValidSignature, (digest, signature));
        bool ok;
        uint256 returned;
        uint256 size;
        assembly ("memory-safe") {
            ok := staticcall(ERC1271_GAS_LIMIT, signer, add(data, 0x20), mload(data), 0, 0x20)
            size := returndatasize()
            returned := mload(0)
        }
        return ok && size >= 32 && bytes32(returned) == bytes32(IERC1271.isValidSignature.selector);
    }

    function _checkPayeeOrOperator(address payee) private view {
        if (msg.sender != payee && !isOperator[payee][msg.sender]) revert NotPayeeOrOperator(msg.sender);
    }

    function _send(address token, address to, uint256 amount) private {
        if (token == address(0)) {
            if (!_sendEth(to, amount, gasleft())) revert EthTransferFailed(to);
        } else {
            IERC20(token).safeTransfer(to, amount);
        }
    }

    /// @dev A refund the payee's close pushes to the payer; a payer that cannot take it (reverts,
    /// burns gas, is blocklisted by the token) is credited instead, so it cannot block the close.
    function _refund(address token, address payer, uint256 amount) private {
        bool ok;
        if (token == address(0)) {
            ok = _sendEth(payer, amount, REFUND_GAS_LIMIT);
        } else {
            ok = IERC20(token).trySafeTransfer(payer, amount);
        }
        if (!ok) {
            credits[payer][token] += amount;
            emit RefundCredited(payer, token, amount);
        }
    }

    /// @dev Sends ETH and copies none of the recipient's return data: Solidity's `call` would copy all
    /// of it into memory, so a recipient answering with ~180 KB (within its gas cap) would make the
    /// caller pay again, quadratically, for the copy.
    function _sendEth(address to, uint256 amount, uint256 gasLimit) private returns (bool ok) {
        assembly ("memory-safe") {
            ok := call(gasLimit, to, amount, 0, 0, 0, 0)
        }
    }
}
