"""Word lists for PII detection: surnames, cue words, place names, plate prefixes.

Surnames: the most common single-character surnames of the mainland population and the
common compound surnames (public-domain name facts, written out here). Place names: the
34 provincial-level divisions and large cities, which start an address.
"""

from __future__ import annotations

SINGLE_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜"
    "叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎"
    "贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申"
    "欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴"
    "蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席"
    "卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟"
    "邝官封谈匡鞠惠荆乐冀郁胥南班储原栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强"
    "帅屠豆朴盖练廉禹井祖漆巴丰支卿国狄平计索宣晋相初门云容敬来扈晁芮都普阙浦戈伏鹿薄邸雍"
    "辜羊阿乌母裘亓修邰赫杭况那宿鲜印逯隆茹诸战慕危玉银亢嵇公哈湛宾戎勾茅利於呼居揭干但尉"
    "冶斯元束檀衣信展阴昝智幸奉植衡富尧闭由"
)
COMPOUND_SURNAMES = (
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文",
    "司徒", "夏侯", "轩辕", "令狐", "端木", "独孤", "南宫", "西门", "万俟", "闻人", "澹台",
    "公冶", "太史", "申屠", "钟离", "赫连", "呼延", "百里", "东郭", "司空", "左丘", "拓跋",
)  # fmt: skip
# "<cue>：<name>" — labels and phrases that introduce a person's name.
NAME_BEFORE_CUES = (
    "姓名", "联系人", "收件人", "收货人", "寄件人", "客户", "持卡人", "申请人", "投保人",
    "被保险人", "受益人", "乘客", "患者", "病人", "经办人", "法定代表人", "负责人", "户主",
    "借款人", "担保人", "开户名", "户名", "我叫", "本人",
)  # fmt: skip
# "<name><cue>" — honorifics and titles that follow a name.
NAME_AFTER_CUES = (
    "先生", "女士", "小姐", "同学", "老师", "经理", "主任", "医生", "律师", "师傅", "阿姨",
    "大爷", "总监", "董事长",
)  # fmt: skip
CARD_CUES = ("卡号", "银行卡", "信用卡", "储蓄卡", "借记卡", "账号", "帐号", "账户", "card")
PROVINCES = (
    "北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江",
    "安徽", "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州",
    "云南", "陕西", "甘肃", "青海", "台湾", "内蒙古", "广西", "西藏", "宁夏", "新疆", "香港",
    "澳门",
)  # fmt: skip
CITIES = (
    "广州", "深圳", "杭州", "南京", "成都", "武汉", "西安", "苏州", "郑州", "长沙", "沈阳",
    "青岛", "宁波", "东莞", "无锡", "厦门", "福州", "济南", "合肥", "大连", "哈尔滨", "长春",
    "昆明", "南宁", "南昌", "贵阳", "太原", "石家庄", "兰州", "乌鲁木齐", "呼和浩特", "银川",
    "西宁", "拉萨", "海口", "佛山", "温州", "珠海", "常州", "徐州", "烟台", "泉州", "惠州",
)  # fmt: skip
# An address starts with a provincial-level name or a city, optionally with its suffix.
ADDRESS_START = tuple(
    f"{name}(?:省|市|自治区|特别行政区|壮族自治区|回族自治区|维吾尔自治区)?"
    for name in sorted(PROVINCES + CITIES, key=len, reverse=True)
)
PLATE_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领"
